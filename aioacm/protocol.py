"""The ACM wire grammar as pure functions: validation, GBK encoding, md5, probes, parsing.

Nothing here does I/O, so every function is table-tested against the vectors in PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote_plus, unquote_plus, urlencode

from .errors import InvalidParameterError

__all__ = [
    "DEFAULT_GROUP",
    "LINE_SEPARATOR",
    "MAX_CONTENT_BYTES",
    "PROBE_FIELD",
    "WORD_SEPARATOR",
    "build_poll_response",
    "build_probe",
    "cache_key",
    "content_md5",
    "decode_content",
    "encode_content",
    "encode_form",
    "encode_probe_record",
    "encode_query",
    "normalize_group",
    "parse_cache_key",
    "parse_poll_response",
    "parse_probe",
    "parse_server_list",
    "probe_form_body",
    "validate_data_id",
    "validate_namespace",
]

DEFAULT_GROUP = "DEFAULT_GROUP"
WORD_SEPARATOR = "\x02"
LINE_SEPARATOR = "\x01"
WIRE_ENCODING = "gbk"

MAX_DATA_ID_BYTES = 256
MAX_GROUP_BYTES = 128
MAX_NAMESPACE_BYTES = 128
MAX_CONTENT_BYTES = 100 * 1024

# ACM's documented alphabet for dataId and group. The sync SDK accepts any Unicode letter,
# which the server then refuses: we refuse first.
_KEY_PART = re.compile(r"[A-Za-z0-9.:_-]+")
# The namespace ends up in a file name, so it gets no ``/`` and no ``..`` either.
_NAMESPACE = re.compile(r"[A-Za-z0-9._:-]+")
# A server in the address server's list: a DNS name or an IPv4 address (IPv6 is checked with
# ipaddress). Underscores occur in real internal names, so they are let through.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidParameterError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _check_key_part(value: str, what: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidParameterError(
            f"Invalid {what}: longer than {limit} characters ({len(value)})"
        )
    if not _KEY_PART.fullmatch(value):
        raise InvalidParameterError(
            f"Invalid {what} {value!r}: only ASCII letters, digits and . : - _ are allowed"
        )
    return value


def validate_data_id(data_id: object) -> str:
    """Return ``data_id`` if ACM accepts it, else raise InvalidParameterError."""
    value = _check_str(data_id, "data_id")
    if not value:
        raise InvalidParameterError("Invalid dataId: it must not be empty")
    return _check_key_part(value, "dataId", MAX_DATA_ID_BYTES)


def normalize_group(group: object) -> str:
    """Return the group to use: ``DEFAULT_GROUP`` for None or blank, else the stripped group."""
    if group is None:
        return DEFAULT_GROUP
    value = _check_str(group, "group").strip()
    if not value:
        return DEFAULT_GROUP
    return _check_key_part(value, "group", MAX_GROUP_BYTES)


def validate_namespace(namespace: object) -> str:
    """Return the namespace (tenant) id, ``""`` for None; refuse anything unsafe in a file name."""
    if namespace is None:
        return ""
    value = _check_str(namespace, "namespace")
    if not value:
        return ""
    if len(value) > MAX_NAMESPACE_BYTES:
        raise InvalidParameterError(
            f"Invalid namespace: longer than {MAX_NAMESPACE_BYTES} characters ({len(value)})"
        )
    if not _NAMESPACE.fullmatch(value) or ".." in value:
        raise InvalidParameterError(
            f"Invalid namespace {value!r}: only ASCII letters, digits and . : - _ are allowed,"
            " and no '..'"
        )
    return value


def encode_content(content: object) -> bytes:
    """Return the GBK bytes ACM stores for ``content``; refuse what ACM cannot store.

    ``bytes`` are taken as UTF-8 text, as the sync SDK does.
    """
    if content is None:
        raise InvalidParameterError("Can not publish None content, use remove instead")
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameterError("content bytes must be UTF-8 text") from exc
    text = _check_str(content, "content")
    try:
        data = text.encode(WIRE_ENCODING)
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise InvalidParameterError(
            f"content has characters ACM cannot store (GBK has no {bad!r} at position {exc.start})"
        ) from None
    if len(data) > MAX_CONTENT_BYTES:
        raise InvalidParameterError(
            f"content is {len(data)} bytes in GBK; ACM stores at most {MAX_CONTENT_BYTES}"
        )
    return data


def decode_content(body: bytes) -> str:
    """Decode a config body as ACM sends it (GBK)."""
    if body.isascii():  # GBK is ASCII below 0x80, and the ASCII codec is far faster
        return body.decode("ascii")
    return body.decode(WIRE_ENCODING, errors="replace")


def content_md5(content: str | None) -> str:
    """The md5 ACM compares: lowercase hex over the GBK bytes; ``""`` when there is no value."""
    if content is None:
        return ""
    if content.isascii():
        return hashlib.md5(content.encode("ascii")).hexdigest()
    return hashlib.md5(content.encode(WIRE_ENCODING, errors="replace")).hexdigest()


def encode_form(fields: Sequence[tuple[str, str]]) -> bytes:
    """Form-encode ``fields`` the way ACM expects: values percent-encoded from their GBK bytes."""
    return urlencode(list(fields), encoding=WIRE_ENCODING).encode("ascii")


def encode_query(fields: Sequence[tuple[str, str | int]]) -> str:
    """Encode query parameters (all ASCII after validation)."""
    return urlencode(list(fields))


def cache_key(data_id: str, group: str, namespace: str) -> str:
    """The local file name and watch key: ``dataId+group+namespace`` (the sync SDK's layout)."""
    return f"{data_id}+{group}+{namespace}"


def parse_cache_key(key: str) -> tuple[str, str, str]:
    """Split a cache key back into ``(data_id, group, namespace)``."""
    data_id, group, namespace = key.split("+", 2)
    return data_id, group, namespace


def build_probe(entries: Iterable[tuple[str, str, str, str]]) -> str:
    """Build a ``Probe-Modify-Request`` from ``(data_id, group, md5, tenant)`` entries."""
    return "".join(
        f"{data_id}{WORD_SEPARATOR}{group}{WORD_SEPARATOR}{md5}{WORD_SEPARATOR}{tenant}"
        f"{LINE_SEPARATOR}"
        for data_id, group, md5, tenant in entries
    )


PROBE_FIELD = "Probe-Modify-Request"


def encode_probe_record(data_id: str, group: str, md5: str, tenant: str) -> str:
    """One probe record, already form-encoded: a poller keeps one per key and joins them, so a
    poll of thousands of keys does not percent-encode the whole probe again."""
    return quote_plus(
        f"{data_id}{WORD_SEPARATOR}{group}{WORD_SEPARATOR}{md5}{WORD_SEPARATOR}{tenant}"
        f"{LINE_SEPARATOR}",
        safe="",
        encoding=WIRE_ENCODING,
    )


def probe_form_body(records: Iterable[str]) -> bytes:
    """The form body of a long poll from ``encode_probe_record`` results; the same bytes as
    ``encode_form([(PROBE_FIELD, build_probe(entries))])``."""
    return f"{PROBE_FIELD}={''.join(records)}".encode("ascii")


def parse_probe(probe: str) -> list[tuple[str, str, str, str]]:
    """Parse a probe into ``(data_id, group, md5, tenant)``; 3-field records have tenant ``""``.

    Raises:
        ValueError: a record has fewer than 3 or more than 4 fields.
    """
    entries = []
    for record in probe.split(LINE_SEPARATOR):
        if not record.strip():
            continue
        fields = record.split(WORD_SEPARATOR)
        if len(fields) == 3:
            fields.append("")
        if len(fields) != 4:
            raise ValueError(f"bad probe record with {len(fields)} fields")
        data_id, group, md5, tenant = fields
        entries.append((data_id, group, md5, tenant))
    return entries


def build_poll_response(keys: Iterable[tuple[str, str, str]]) -> str:
    """Build a long-poll answer from ``(data_id, group, tenant)`` keys (URL-encoded records)."""
    records = "".join(
        WORD_SEPARATOR.join([data_id, group, tenant] if tenant else [data_id, group])
        + LINE_SEPARATOR
        for data_id, group, tenant in keys
    )
    return quote_plus(records)


def parse_poll_response(body: bytes) -> list[tuple[str, str, str]]:
    """Parse a long-poll answer into ``(data_id, group, tenant)`` keys.

    Blank records are skipped; records with fewer than two fields are ignored (a malformed
    answer never raises).
    """
    if not body:
        return []
    text = unquote_plus(body.decode("utf-8", errors="replace"))
    keys = []
    for record in text.split(LINE_SEPARATOR):
        if not record.strip():
            continue
        fields = record.strip("\r\n").split(WORD_SEPARATOR)
        if len(fields) < 2 or not fields[0] or not fields[1]:
            continue
        tenant = fields[2] if len(fields) > 2 else ""
        keys.append((fields[0], fields[1], tenant))
    return keys


def _valid_host(host: str) -> bool:
    if _HOST_NAME.fullmatch(host):
        return True
    if "%" in host:  # a zone id would need escaping in every URL
        return False
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def parse_server_list(text: str, default_port: int) -> list[tuple[str, int]]:
    """Parse an address-server answer: one ``ip``, ``ip:port`` or ``[v6]:port`` a line.

    Blank lines are skipped, and so is any line that is not a plain host name or IP address
    with an optional decimal port: an error page or a line like ``evil/x?`` must never become
    a server, nor smuggle a path into the URLs built from it.
    """
    servers: list[tuple[str, int]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        host, port_text = line, ""
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                continue
            host, rest = line[1:end], line[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    continue
                port_text = rest[1:]
        elif line.count(":") == 1:
            host, _, port_text = line.partition(":")
        port = default_port
        if port_text or line.endswith(":"):
            if not (port_text.isascii() and port_text.isdigit()):
                continue
            port = int(port_text)
        if not 0 < port < 65536 or not _valid_host(host):
            continue
        servers.append((host, port))
    return servers
