"""Nacos's HTTP long poll as text: the ``Listening-Configs`` records a client sends and the
records a listener answers with. Pure functions, no I/O (the client's dialect and the bundled
server both use them)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, unquote_plus

__all__ = [
    "LINE_SEPARATOR",
    "WORD_SEPARATOR",
    "build_listen_response",
    "encode_listen_record",
    "parse_listen_records",
    "parse_listen_response",
]

WORD_SEPARATOR = "\x02"
LINE_SEPARATOR = "\x01"


def encode_listen_record(data_id: str, group: str, md5: str, tenant: str) -> str:
    """One key's record of ``Listening-Configs``, form-encoded (UTF-8)."""
    record = f"{data_id}{WORD_SEPARATOR}{group}{WORD_SEPARATOR}{md5}"
    if tenant:
        record += f"{WORD_SEPARATOR}{tenant}"
    return quote(record + LINE_SEPARATOR, safe="")


def parse_listen_records(text: str) -> list[tuple[str, str, str, str]]:
    """``Listening-Configs`` (decoded) as ``(data_id, group, md5, tenant)``.

    Raises:
        ValueError: a record with fewer than 3 or more than 4 fields.
    """
    entries = []
    for record in text.split(LINE_SEPARATOR):
        if not record:
            continue
        fields = record.split(WORD_SEPARATOR)
        if len(fields) == 3:
            fields.append("")
        if len(fields) != 4:
            raise ValueError(f"bad listening record with {len(fields)} fields")
        data_id, group, md5, tenant = fields
        entries.append((data_id, group, md5, tenant))
    return entries


def build_listen_response(keys: Iterable[tuple[str, str, str]]) -> str:
    """A listener's answer from ``(data_id, group, tenant)`` keys (URL-encoded records)."""
    records = "".join(
        WORD_SEPARATOR.join([data_id, group, tenant] if tenant else [data_id, group])
        + LINE_SEPARATOR
        for data_id, group, tenant in keys
    )
    return quote(records, safe="")


def parse_listen_response(body: bytes) -> list[tuple[str, str, str]] | None:
    """``(data_id, group, tenant)`` of the keys a listener's answer names (the tenant as the
    server wrote it); None when the answer is not made of such records."""
    text = unquote_plus(body.decode("utf-8", errors="replace")).strip()
    if not text:
        return []
    keys = []
    for record in text.split(LINE_SEPARATOR):
        record = record.strip("\r\n")
        if not record:
            continue
        fields = record.split(WORD_SEPARATOR)
        if len(fields) < 2 or len(fields) > 3 or not fields[0] or not fields[1]:
            return None
        tenant = fields[2] if len(fields) == 3 else ""
        keys.append((fields[0], fields[1], tenant))
    return keys
