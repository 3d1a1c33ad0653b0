"""The server's request log: one record per request, named by the ACM operation it is."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from multidict import CIMultiDict, MultiDict

if TYPE_CHECKING:
    from .faults import Fault

__all__ = ["RequestRecord"]

_CHARSET = re.compile(r"charset=\"?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


@dataclass
class RequestRecord:
    """One request the server received, as the client sent it, and what it answered.

    A Nacos gRPC message is recorded too: ``op`` is ``grpc:`` and its type
    (``grpc:ConfigQueryRequest``), ``method`` is ``GRPC``, ``path`` the gRPC method
    (``/Request/request`` for unary calls, ``/BiRequestStream/requestBiStream`` for what
    arrives on a stream), ``headers`` its ``metadata.headers``, ``body`` its JSON, and
    ``status`` the ``resultCode`` answered (``None`` for stream messages, which get no answer).

    Attributes:
        op: the operation (one of :data:`OPS`, or ``grpc:`` and a request type).
        method: the HTTP method (``GRPC`` for gRPC).
        path: the request path, without the query.
        query_string: the raw query string (still percent-encoded).
        headers: a case-insensitive copy of the request headers.
        body: the raw request body.
        status: the status answered; ``None`` while the request is in progress, or when the
            connection was dropped (by a fault, or because the server stopped).
        fault: the fault that was applied to the request, if any.
        received_at: ``time.time()`` when the request arrived.
        error_code: a gRPC answer's ``errorCode`` (``None`` for HTTP).
    """

    op: str
    method: str
    path: str
    query_string: str
    headers: CIMultiDict[str]
    body: bytes
    status: int | None = None
    fault: Fault | None = None
    received_at: float = field(default_factory=time.time)
    error_code: int | None = None

    @property
    def query(self) -> MultiDict[str]:
        """The query parameters, decoded as UTF-8."""
        return MultiDict(parse_qsl(self.query_string, keep_blank_values=True))

    def form(self, encoding: str | None = None) -> MultiDict[str]:
        """The form body decoded like the server does (values percent-encoded bytes).

        Args:
            encoding: the charset of the values; by default the ``charset`` of the request's
                Content-Type, else GBK (what ACM clients send).
        """
        if encoding is None:
            match = _CHARSET.search(self.headers.get("Content-Type", ""))
            encoding = match.group(1) if match else "gbk"
        text = self.body.decode(encoding, errors="replace")
        return MultiDict(
            parse_qsl(text, keep_blank_values=True, encoding=encoding, errors="replace")
        )
