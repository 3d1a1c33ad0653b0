"""ACM's dialect: every fact of the ACM wire (PROTOCOL.md), and nothing else.

Paths under ``/diamond-server``, GBK forms and contents, md5 over GBK bytes, the
``Probe-Modify-Request`` long poll and its headers, the address server's URL and the default
ports, the ``Spas-*`` signature (what it covers and where it goes), and list pages. The pure
functions are table-tested against PROTOCOL.md's vectors; ``AcmDialect`` puts them behind the
``Dialect`` interface. The bundled server reads and writes the same grammar with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, unquote_plus, urlencode

from .._version import __version__
from ..auth import ClientCredentials, Credentials, sign
from ..errors import ACMRequestException, InvalidParameterError
from ..keys import Item, checked_data_id, checked_group, content_text
from ..servers import parse_server_list
from ..wire import Fetched, Request, Response, Send, ServerPlan, Signer
from . import Dialect

if TYPE_CHECKING:
    from ..options import Options
    from ..watch import ChangeFeed, ChangeSink

__all__ = [
    "MAX_CONTENT_BYTES",
    "PROBE_FIELD",
    "AcmDialect",
    "build_poll_response",
    "build_probe",
    "content_md5",
    "decode_content",
    "encode_content",
    "encode_form",
    "encode_probe_record",
    "normalize_group",
    "parse_poll_response",
    "parse_probe",
    "probe_form_body",
    "sign_headers",
    "sign_string",
    "validate_data_id",
]

PREFIX = "/diamond-server"
CONFIG_PATH = f"{PREFIX}/config.co"  # GET: read one item; POST: the long poll
PUBLISH_PATH = f"{PREFIX}/basestone.do?method=syncUpdateAll"
REMOVE_PATH = f"{PREFIX}/datum.do?method=deleteAllDatums"
LIST_PATH = f"{PREFIX}/basestone.do"
LIST_METHOD = "getAllConfigByTenant"
PROBE_FIELD = "Probe-Modify-Request"
POLL_TIMEOUT_HEADER = "longPullingTimeout"
POLL_NO_HANG_UP_HEADER = "longPullingNoHangUp"
DATA_KEY_FIELD = "encryptedDataKey"
DATA_KEY_HEADER = "Encrypted-Data-Key"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=GBK"
#: A fixed server list (``host[:port],...``) that replaces the address server.
SERVER_LIST_VARIABLE = "DIAMOND_SERVER_IPS"
ADDRESS_PORT = 8080
HTTP_PORT = 8080
HTTPS_PORT = 443

WORD_SEPARATOR = "\x02"
LINE_SEPARATOR = "\x01"
WIRE_ENCODING = "gbk"

MAX_DATA_ID_BYTES = 256
MAX_GROUP_BYTES = 128
MAX_CONTENT_BYTES = 100 * 1024
#: Seconds a client waits for a held poll beyond the time the server may hold it.
POLL_READ_MARGIN = 10.0

# ACM's documented alphabet for dataId and group. The sync SDK accepts any Unicode letter,
# which the server then refuses: we refuse first.
_KEY_PART = re.compile(r"[A-Za-z0-9.:_-]+")


# -- keys and contents -------------------------------------------------------------------------


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
    return checked_data_id(data_id, _check_key_part, MAX_DATA_ID_BYTES)


def normalize_group(group: object) -> str:
    """Return the group to use: ``DEFAULT_GROUP`` for None or blank, else the stripped group."""
    return checked_group(group, _check_key_part, MAX_GROUP_BYTES)


def encode_content(content: object) -> bytes:
    """Return the GBK bytes ACM stores for ``content``; refuse what ACM cannot store.

    ``bytes`` are taken as UTF-8 text, as the sync SDK does.
    """
    text = content_text(content)
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


# -- the long poll -----------------------------------------------------------------------------


def build_probe(entries: Iterable[tuple[str, str, str, str]]) -> str:
    """Build a ``Probe-Modify-Request`` from ``(data_id, group, md5, tenant)`` entries."""
    return "".join(
        f"{data_id}{WORD_SEPARATOR}{group}{WORD_SEPARATOR}{md5}{WORD_SEPARATOR}{tenant}"
        f"{LINE_SEPARATOR}"
        for data_id, group, md5, tenant in entries
    )


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


# -- signing -----------------------------------------------------------------------------------


def sign_string(tenant: str | None, group: str | None, timestamp: str) -> str:
    """The string the sync SDK signs; ``""`` when the request carries neither tenant nor group."""
    prefix = "".join(f"{part}+" for part in (tenant, group) if part)
    return f"{prefix}{timestamp}" if prefix else ""


def sign_headers(
    credentials: Credentials, tenant: str | None, group: str | None, timestamp_ms: int
) -> dict[str, str]:
    """The auth headers for one request: ``Spas-AccessKey`` and ``timeStamp`` always, the
    signature when the request carries a tenant or a group (the long poll carries neither,
    and the sync SDK sends it unsigned), the STS token when there is one."""
    ts = str(timestamp_ms)
    headers = {"Spas-AccessKey": credentials.access_key, "timeStamp": ts}
    if credentials.security_token:
        headers["Spas-SecurityToken"] = credentials.security_token
    text = sign_string(tenant, group, ts)
    if text:
        headers["Spas-Signature"] = sign(credentials.secret_key, text)
    return headers


# -- list pages --------------------------------------------------------------------------------


def decode_page(body: bytes, server: str) -> dict[str, Any]:
    """A list page's JSON (UTF-8, or GBK as ACM declares it, leniently)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode(WIRE_ENCODING, errors="replace")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ACMRequestException("list answered with malformed JSON", server=server) from exc
    if not isinstance(data, dict):
        raise ACMRequestException("list answered with malformed JSON", server=server)
    return data


# -- the dialect -------------------------------------------------------------------------------


class AcmDialect(Dialect):
    """ACM for one client.

    Args:
        endpoint: ``host[:port]`` of the address server (or, with ``cai_enabled=False``, of
            the server itself).
        unit_name: the address-server unit, if any.
        namespace: the namespace (tenant) id, "" for the default one.
        options: the client's live options.
        credentials: the client's live credentials.
    """

    name = "acm"

    def __init__(
        self,
        endpoint: str,
        unit_name: str | None,
        namespace: str,
        options: Options,
        credentials: ClientCredentials,
    ) -> None:
        self.endpoint = endpoint
        self.unit_name = unit_name
        self.namespace = namespace
        self._options = options
        self._credentials = credentials
        # what every request about this namespace adds
        self._tenant: tuple[tuple[str, str], ...] = (("tenant", namespace),) if namespace else ()
        # (app_name, has a body) -> the headers every request carries
        self._common: dict[tuple[str, bool], dict[str, str]] = {}
        # (hold in ms, first poll) -> the long poll's headers
        self._poll_headers: dict[tuple[int, bool], dict[str, str]] = {}

    def check_key(self, data_id: object, group: object) -> tuple[str, str]:
        return validate_data_id(data_id), normalize_group(group)

    def check_content(self, content: object) -> str:
        data = encode_content(content)  # refuses what ACM cannot store, before any I/O
        return data.decode(WIRE_ENCODING)

    def content_md5(self, content: str | None) -> str:
        return content_md5(content)

    def _scope(self, group: str | None) -> tuple[str | None, str | None]:
        return (self.namespace or None, group)

    def query(self, item: Item) -> Request:
        return Request(
            "GET",
            CONFIG_PATH,
            query=(("dataId", item.data_id), ("group", item.group), *self._tenant),
            scope=self._scope(item.group),
        )

    def read_query(self, response: Response, item: Item) -> Fetched | None:
        if response.status == 404:
            return None
        data_key = (response.headers.get(DATA_KEY_HEADER) or None) if item.envelope else None
        return Fetched(decode_content(response.body), data_key)

    def publish(
        self,
        item: Item,
        content: str,
        *,
        data_key: str | None = None,
        config_type: str | None = None,
        cas_md5: str | None = None,
    ) -> Request:
        # ACM keeps no config type and has no compare-and-set: both are ignored.
        extra = ((DATA_KEY_FIELD, data_key),) if data_key is not None else ()
        form = (
            ("dataId", item.data_id),
            ("group", item.group),
            ("content", content),
            *extra,
            *self._tenant,
        )
        return Request("POST", PUBLISH_PATH, body=encode_form(form), scope=self._scope(item.group))

    def remove(self, item: Item) -> Request:
        form = (("dataId", item.data_id), ("group", item.group), *self._tenant)
        return Request("POST", REMOVE_PATH, body=encode_form(form), scope=self._scope(item.group))

    def list_page(self, page: int, size: int) -> Request:
        return Request(
            "GET",
            LIST_PATH,
            query=(("pageNo", page), ("pageSize", size), ("method", LIST_METHOD), *self._tenant),
            scope=self._scope(None),
        )

    def read_page(self, response: Response) -> dict[str, Any]:
        if response.status == 404:
            raise ACMRequestException("list is not served", status=404, server=response.server)
        return decode_page(response.body, response.server)

    # -- servers, framing, auth ------------------------------------------------------------

    def server_plan(self) -> ServerPlan:
        port = HTTPS_PORT if self._options.tls_enabled else HTTP_PORT
        static = os.environ.get(SERVER_LIST_VARIABLE, "").strip()
        if static:
            servers = parse_server_list(static.replace(",", "\n"), port)
            return ServerPlan(self.endpoint, tuple(servers), default_port=port)
        if not self._options.cai_enabled:
            servers = parse_server_list(self.endpoint, port)
            return ServerPlan(self.endpoint, tuple(servers), default_port=port)
        endpoint = self.endpoint if ":" in self.endpoint else f"{self.endpoint}:{ADDRESS_PORT}"
        if self.unit_name:
            url = f"http://{endpoint}{PREFIX}/diamond-unit-{self.unit_name}?nofix=1"
        else:
            url = f"http://{endpoint}{PREFIX}/diamond"
        return ServerPlan(self.endpoint, address_url=url, default_port=port)

    def common_headers(self, body: bool) -> Mapping[str, str]:
        app_name = self._options.app_name
        headers = self._common.get((app_name, body))
        if headers is None:
            headers = {
                "Diamond-Client-AppName": app_name,
                "Client-Version": __version__,
                "exConfigInfo": "true",
            }
            if body:
                headers["Content-Type"] = FORM_CONTENT_TYPE
            self._common[(app_name, body)] = headers
        return headers

    def signer(self) -> Signer | None:
        enabled = self._options.auth_enabled
        configured = self._credentials.configured
        if enabled is None:
            enabled = configured
        if not enabled:
            return None
        if not configured:
            raise InvalidParameterError("auth_enabled is on but no ak/sk or RAM role is set")
        return self._sign

    def denied_hint(self) -> str:
        if self._credentials.configured:
            return "check the AccessKey/SecretKey and that they may use this namespace"
        return "the server wants credentials: give ak and sk (or ram_role_name)"

    async def _sign(self, request: Request) -> Mapping[str, str]:
        credentials = await self._credentials.get_credentials()
        tenant, group = request.scope
        return sign_headers(credentials, tenant, group, int(time.time() * 1000))

    # -- watching: the long poll -------------------------------------------------------------

    def change_feed(self, sink: ChangeSink, send: Send, options: Options) -> ChangeFeed:
        from ..polling import LongPollFeed  # the watch machinery, only once something is watched

        return LongPollFeed(sink, send, self, options)

    def listen_record(self, item: Item, md5: str) -> str:
        """The key's record in a probe, already form-encoded."""
        return encode_probe_record(item.data_id, item.group, md5, self.namespace)

    def listen_request(self, records: str, *, first: bool) -> Request:
        """The long poll over joined ``listen_record`` results; ``first``: answer at once (a
        key in it is polled for the first time)."""
        hold = int(self._options.pulling_timeout * 1000)
        headers = self._poll_headers.get((hold, first))
        if headers is None:
            headers = {POLL_TIMEOUT_HEADER: str(hold)}
            if first:
                headers[POLL_NO_HANG_UP_HEADER] = "true"
            self._poll_headers[(hold, first)] = headers
        body = f"{PROBE_FIELD}={records}".encode("ascii")
        return Request("POST", CONFIG_PATH, body=body, headers=headers)

    def listen_timeout(self) -> float:
        """Seconds the client waits for a long poll's answer."""
        return self._options.pulling_timeout + POLL_READ_MARGIN

    def read_listen(self, response: Response) -> list[tuple[str, str, str]] | None:
        """The ``(data_id, group, tenant)`` keys a long poll's answer names; None when the
        answer is malformed (a proxy's error page, a cut answer: nothing in it can be trusted,
        not even "nothing changed", which would confirm stale snapshots)."""
        reported = parse_poll_response(response.body)
        if response.status != 200 or (not reported and response.body.strip()):
            return None
        return reported
