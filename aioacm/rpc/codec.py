"""The two protobuf messages of Nacos's gRPC API, encoded and decoded by hand.

Nacos's service file (``nacos_grpc_service.proto``, no package) defines::

    message Metadata { string type = 3; string clientIp = 8; map<string, string> headers = 7; }
    message Payload  { Metadata metadata = 2; google.protobuf.Any body = 3; }

and ``Any`` is ``{string type_url = 1; bytes value = 2;}``. Every request and response is a
``Payload`` whose ``metadata.type`` names the Java class (``ConfigQueryRequest``...) and whose
``body.value`` is that object as UTF-8 JSON (nulls omitted, unknown fields ignored). Those few
fields are all this module knows: no generated code, no protobuf runtime. Pure functions, no I/O.

The methods: ``/Request/request`` (unary) and ``/BiRequestStream/requestBiStream`` (both ways).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "STREAM_METHOD",
    "UNARY_METHOD",
    "CodecError",
    "Message",
    "decode",
    "decode_payload",
    "encode",
    "encode_payload",
    "encode_request",
    "reset_target",
]

UNARY_METHOD = "/Request/request"
STREAM_METHOD = "/BiRequestStream/requestBiStream"

_LEN = 2  # wire type of strings, bytes and messages
_METADATA, _BODY = 2, 3  # Payload's fields
_TYPE, _HEADERS, _CLIENT_IP = 3, 7, 8  # Metadata's
_TYPE_URL, _VALUE = 1, 2  # Any's
_KEY, _MAP_VALUE = 1, 2  # a map entry's


class CodecError(ValueError):
    """Bytes that are not a Payload (or whose body is not a JSON object)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded Payload.

    Attributes:
        type: ``metadata.type``: the Java class's simple name.
        body: the JSON body as a dict.
        headers: ``metadata.headers``.
        client_ip: ``metadata.clientIp``.
    """

    type: str
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    client_ip: str = ""

    def __repr__(self) -> str:  # never the body or the headers: contents, tokens
        return f"Message({self.type!r})"


# -- encoding ------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(data)) + data


def encode_payload(
    type_name: str, body: bytes, headers: Mapping[str, str] | None = None, client_ip: str = ""
) -> bytes:
    """A Payload of ``type_name`` carrying the already encoded JSON ``body``."""
    metadata = bytearray()
    if type_name:
        metadata += _field(_TYPE, type_name.encode("utf-8"))
    for name, value in (headers or {}).items():
        entry = _field(_KEY, name.encode("utf-8")) + _field(_MAP_VALUE, value.encode("utf-8"))
        metadata += _field(_HEADERS, entry)
    if client_ip:
        metadata += _field(_CLIENT_IP, client_ip.encode("utf-8"))
    # Any with an empty type_url: only the value (Nacos reads metadata.type instead)
    return _field(_METADATA, bytes(metadata)) + _field(_BODY, _field(_VALUE, body))


def encode(
    type_name: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    client_ip: str = "",
) -> bytes:
    """A Payload of ``type_name`` whose body is ``body`` as JSON (None values left out)."""
    document = {name: value for name, value in body.items() if value is not None}
    data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return encode_payload(type_name, data, headers, client_ip)


# -- decoding ------------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise CodecError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """The length-delimited fields of one message, in order; other wire types skipped."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > end:
                raise CodecError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        else:
            raise CodecError(f"unsupported wire type {wire}")
        if pos > end:
            raise CodecError("truncated field")
    return out


def decode_payload(data: bytes) -> tuple[str, bytes, dict[str, str], str]:
    """``(type, body bytes, headers, client_ip)`` of a Payload."""
    type_name, body, client_ip = "", b"", ""
    headers: dict[str, str] = {}
    for number, value in _fields(data):
        if number == _METADATA:
            for inner, part in _fields(value):
                if inner == _TYPE:
                    type_name = part.decode("utf-8", errors="replace")
                elif inner == _CLIENT_IP:
                    client_ip = part.decode("utf-8", errors="replace")
                elif inner == _HEADERS:
                    entry = dict(_fields(part))
                    key = entry.get(_KEY, b"").decode("utf-8", errors="replace")
                    headers[key] = entry.get(_MAP_VALUE, b"").decode("utf-8", errors="replace")
        elif number == _BODY:
            for inner, part in _fields(value):
                if inner == _VALUE:
                    body = part
    return type_name, body, headers, client_ip


def decode(data: bytes) -> Message:
    """A Payload as a ``Message`` (an empty body is ``{}``)."""
    type_name, raw, headers, client_ip = decode_payload(data)
    if raw:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CodecError(f"{type_name or 'a payload'} has a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise CodecError(f"{type_name or 'a payload'} has a body that is not a JSON object")
    else:
        body = {}
    return Message(type_name, body, headers, client_ip)


def encode_request(
    type_name: str, body: bytes, headers: Mapping[str, str], request_id: str
) -> bytes:
    """A request Payload: ``body`` is a JSON object (bytes) to which the requestId and the
    (empty: they travel in the metadata) headers are added, as Nacos's clients send them."""
    inner = body.strip()
    extra = f'"requestId":"{request_id}","headers":{{}}'.encode()
    empty = inner in (b"", b"{}")
    document = b"{" + extra + (b"}" if empty else b"," + inner[1:])
    return encode_payload(type_name, document, headers)


def reset_target(body: Mapping[str, Any]) -> tuple[str, int] | None:
    host, port = body.get("serverIp"), body.get("serverPort")
    if not isinstance(host, str) or not host:
        return None
    try:
        number = int(port) if port not in (None, "") else 0
    except (TypeError, ValueError):
        return None
    return (host, number) if 0 < number < 65536 else None
