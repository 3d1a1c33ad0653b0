"""Nacos over gRPC (Nacos 2.x and 3.x, NACOS.md §4): config requests as gRPC messages.

Everything but the config calls is Nacos's HTTP dialect (this class extends it): keys,
contents and md5s (UTF-8), the server list, the login (HTTP, its token then travels in
``metadata.headers`` as ``accessToken``), and listing (Nacos has no gRPC list call). The
config calls are ``Request``s with method ``GRPC``: ``path`` is the message type
(``ConfigQueryRequest``...) and ``body`` the JSON fields; ``aioacm.rpc.transport`` sends them
on the client's connection and answers a ``Response`` whose ``status`` is 200 for a success
and Nacos's ``errorCode`` otherwise (300: not found), with the decoded answer in ``data``.

Where the server turned out to have no gRPC port (``protocol="auto"``), the transport asks
this dialect's HTTP side to build the same request (``Request.op``), and the readers below
read HTTP answers (``data`` is None then) as the HTTP dialect does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ACMRequestException
from ..keys import Item
from ..wire import Fetched, Request, Response, Send, Signer
from .nacos import NacosHttpDialect, cas_failure, nacos_sign_headers, normalize_namespace

if TYPE_CHECKING:
    from ..options import Options
    from ..watch import ChangeFeed, ChangeSink


class FeedMaker(Protocol):
    """What makes this dialect's change feed: the client's gRPC transport (which owns the
    connection the feed listens on)."""

    def change_feed(self, sink: ChangeSink, send: Send, options: Options) -> ChangeFeed: ...


__all__ = [
    "GRPC_METHOD",
    "LISTEN_CHUNK",
    "NOT_FOUND",
    "FeedMaker",
    "NacosGrpcDialect",
    "grpc_sign_resource",
]

#: ``Request.method`` of a gRPC request
GRPC_METHOD = "GRPC"
#: Nacos's errorCode for "no such config"
NOT_FOUND = 300
#: errorCode of a query that met a write in progress: ask again
QUERY_CONFLICT = 400
#: at most this many keys in one batch listen (the Java client's per-task size)
LISTEN_CHUNK = 3000

_QUERY_ANSWERS = frozenset((200, NOT_FOUND))
_ACK_ANSWERS = frozenset((200,))
_CAS_ANSWERS = frozenset((200, 500))  # a failed compare-and-set is errorCode 500


def grpc_sign_resource(tenant: str | None, group: str | None) -> str:
    """What an AK/SK signature over gRPC covers besides the timestamp: ``tenant+group``,
    ``group`` or ``tenant`` alone, or nothing (then only the timestamp is signed)."""
    if tenant and group:
        return f"{tenant}+{group}"
    return group or tenant or ""


def _json(fields: Mapping[str, Any]) -> bytes:
    document = {name: value for name, value in fields.items() if value is not None}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class NacosGrpcDialect(NacosHttpDialect):
    """Nacos's gRPC config API for one client (the rest is ``NacosHttpDialect``'s).

    Args: those of ``NacosHttpDialect``.
    """

    name = "nacos-grpc"
    #: the client's gRPC transport, once it opened: it makes the change feed
    rpc: FeedMaker | None = None

    # -- requests and answers --------------------------------------------------------------

    def _grpc(
        self,
        type_name: str,
        fields: Mapping[str, Any],
        scope: tuple[str | None, str | None],
        answers: frozenset[int],
        op: tuple[Any, ...] | None,
    ) -> Request:
        return Request(
            GRPC_METHOD, type_name, body=_json(fields), scope=scope, answers=answers, op=op
        )

    def _key_fields(self, item: Item) -> dict[str, Any]:
        return {"dataId": item.data_id, "group": item.group, "tenant": self.namespace}

    def query(self, item: Item) -> Request:
        fields = self._key_fields(item)
        return self._grpc(
            "ConfigQueryRequest", fields, self._scope(item.group), _QUERY_ANSWERS, ("query", item)
        )

    def read_query(self, response: Response, item: Item) -> Fetched | None:
        data = response.data
        if data is None:
            return super().read_query(response, item)
        if response.status == NOT_FOUND:
            return None
        content = data.get("content")
        if not isinstance(content, str):
            content = ""
        data_key = data.get("encryptedDataKey") if item.envelope else None
        config_type = data.get("contentType")
        return Fetched(
            content,
            data_key if isinstance(data_key, str) and data_key else None,
            config_type if isinstance(config_type, str) and config_type else None,
        )

    def publish(
        self,
        item: Item,
        content: str,
        *,
        data_key: str | None = None,
        config_type: str | None = None,
        cas_md5: str | None = None,
    ) -> Request:
        addition: dict[str, str] = {}
        if config_type is not None:
            addition["type"] = config_type
        if data_key is not None:
            addition["encryptedDataKey"] = data_key
        app_name = self._options.app_name
        if app_name:
            addition["appName"] = app_name
        fields = {**self._key_fields(item), "content": content, "additionMap": addition}
        if cas_md5 is not None:
            fields["casMd5"] = cas_md5
        op = ("publish", item, content, data_key, config_type, cas_md5)
        answers = _ACK_ANSWERS if cas_md5 is None else _CAS_ANSWERS
        return self._grpc("ConfigPublishRequest", fields, self._scope(item.group), answers, op)

    def remove(self, item: Item) -> Request:
        return self._grpc(
            "ConfigRemoveRequest",
            self._key_fields(item),
            self._scope(item.group),
            _ACK_ANSWERS,
            ("remove", item),
        )

    def as_http(self, request: Request) -> Request:
        """The HTTP request doing what a gRPC request built here does (``Request.op``)."""
        op = request.op
        if op is None:
            raise ValueError(f"{request.path} has no HTTP equivalent")
        name, item, *rest = op
        if name == "query":
            return NacosHttpDialect.query(self, item)
        if name == "remove":
            return NacosHttpDialect.remove(self, item)
        if name == "publish":
            content, data_key, config_type, cas_md5 = rest
            return NacosHttpDialect.publish(
                self, item, content, data_key=data_key, config_type=config_type, cas_md5=cas_md5
            )
        raise ValueError(f"{request.path} has no HTTP equivalent")

    def read_ack(self, response: Response, item: Item) -> None:
        data = response.data
        if data is None:
            super().read_ack(response, item)
            return
        if data.get("resultCode") != 200 and response.status == 500:
            raise cas_failure(str(data.get("message") or ""), response, item)
        if data.get("resultCode") != 200:
            raise ACMRequestException(
                f"the server did not confirm the change: {data.get('message') or 'no reason'}",
                status=response.status,
                server=response.server,
                key=item.key,
            )

    def listen(self, entries: list[tuple[Item, str]], listen: bool = True) -> Request:
        """A batch listen (or, ``listen=False``, unlisten) of ``(item, md5 held)`` pairs (at
        most ``LISTEN_CHUNK``); signed over the timestamp alone, as Nacos does."""
        contexts = [
            {"dataId": item.data_id, "group": item.group, "tenant": self.namespace, "md5": md5}
            for item, md5 in entries
        ]
        fields = {"listen": listen, "configListenContexts": contexts}
        return self._grpc("ConfigBatchListenRequest", fields, (None, None), _ACK_ANSWERS, None)

    def read_listen_answer(self, response: Response) -> list[tuple[str, str]]:
        """``(data_id, group)`` of the keys a batch listen says differ from the md5s sent."""
        data = response.data or {}
        changed = []
        for entry in data.get("changedConfigs") or ():
            if not isinstance(entry, dict):
                continue
            data_id, group = entry.get("dataId"), entry.get("group")
            tenant = normalize_namespace(entry.get("tenant") or "")
            if isinstance(data_id, str) and isinstance(group, str) and tenant == self.namespace:
                changed.append((data_id, group))
        return changed

    def read_push(self, data: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(data_id, group)`` a ``ConfigChangeNotifyRequest`` names, if it is this
        namespace's."""
        data_id, group = data.get("dataId"), data.get("group")
        tenant = normalize_namespace(data.get("tenant") or "")
        if isinstance(data_id, str) and isinstance(group, str) and tenant == self.namespace:
            return data_id, group
        return None

    # -- auth: headers in metadata.headers -------------------------------------------------

    def signer(self) -> Signer | None:
        keys = self._credentials.configured and self._options.auth_enabled is not False
        login = self.login
        if login is None and not keys:
            return None
        return self._grpc_sign if keys else self._token_only

    async def _token_only(self, request: Request) -> Mapping[str, str]:
        if request.method != GRPC_METHOD:
            assert self.login is not None
            return await self.login.headers(request)  # a login or a list: HTTP
        assert self.login is not None
        return {"accessToken": await self.login.token()}

    async def _grpc_sign(self, request: Request) -> Mapping[str, str]:
        if request.method != GRPC_METHOD:
            http_signer = NacosHttpDialect.signer(self)  # a list, over HTTP
            return await http_signer(request) if http_signer is not None else {}
        headers: dict[str, str] = {}
        if self.login is not None:
            headers["accessToken"] = await self.login.token()
        credentials = await self._credentials.get_credentials()
        tenant, group = request.scope
        resource = grpc_sign_resource(tenant, group)
        # Nacos's gRPC rule: resource+"+"+ts, or ts alone; the HTTP signer builds the
        # tenant+group form, so hand it the resource as a lone "group"
        headers.update(
            nacos_sign_headers(credentials, None, resource or None, int(time.time() * 1000))
        )
        return headers

    # -- watching --------------------------------------------------------------------------

    def change_feed(self, sink: ChangeSink, send: Send, options: Options) -> ChangeFeed:
        if self.rpc is None:
            raise RuntimeError("the gRPC dialect's client has not opened")
        return self.rpc.change_feed(sink, send, options)
