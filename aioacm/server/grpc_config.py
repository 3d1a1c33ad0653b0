"""The config calls of Nacos's gRPC API over the server's store: query, publish, remove and
batch listen, with Nacos's auth (NACOS.md §4).

Each call is answered with the handler's own response type, as a Nacos 2.x/3.x server does:
``resultCode`` 200, or 500 with an ``errorCode``: 300 for a missing item, 400 for bad
parameters, 403 when auth refuses the call (a missing or bad ``accessToken``, or bad ``Spas-*``
headers when the server holds access keys), 500 when a publish's ``casMd5`` no longer matches.
Pure request-in, answer-out: the connection a listen belongs to hands in its listen table.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from multidict import CIMultiDict

from ..dialects.nacos import CONFIG_TYPES, check_content
from ..errors import InvalidParameterError
from ..rpc.codec import Message
from .nacos import NacosReject, NacosUsers, nacos_key
from .security import AccessDenied, SignatureChecker
from .store import ConfigKey, ConfigStore

__all__ = [
    "CONFIG_RESPONSES",
    "ConfigCalls",
    "Listens",
    "Reply",
    "failure",
    "success",
]

#: The config requests served, and the response type each is answered with.
CONFIG_RESPONSES = {
    "ConfigQueryRequest": "ConfigQueryResponse",
    "ConfigPublishRequest": "ConfigPublishResponse",
    "ConfigRemoveRequest": "ConfigRemoveResponse",
    "ConfigBatchListenRequest": "ConfigChangeBatchListenResponse",
}

#: An answer: the response's type and its JSON body.
Reply = tuple[str, dict[str, Any]]

#: One connection's listened keys, each with the ``(dataId, group, tenant)`` the client named
#: it by (pushes name the key the same way; ``tenant`` is None when the client sent none).
Listens = MutableMapping[ConfigKey, tuple[str, str, str | None]]

NOT_FOUND = 300
INVALID_PARAM = 400
NO_RIGHT = 403
SERVER_ERROR = 500


def success(type_name: str, **fields: Any) -> Reply:
    """A successful response of ``type_name`` (Java's ``Response`` getters, ``success``
    included)."""
    return type_name, {"resultCode": 200, "errorCode": 0, "success": True, **fields}


def failure(type_name: str, error_code: int, message: str, **fields: Any) -> Reply:
    """A failed response: ``resultCode`` 500 with ``error_code`` and ``message``."""
    body = {"resultCode": 500, "errorCode": error_code, "message": message, "success": False}
    return type_name, {**body, **fields}


def _text(body: Mapping[str, Any], name: str) -> str | None:
    """A string field of a JSON body (scalars as Jackson would coerce them), else None."""
    value = body.get(name)
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _token(headers: CIMultiDict[str]) -> str | None:
    bearer = headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        return bearer[len("Bearer ") :]
    return headers.get("accessToken") or None


class ConfigCalls:
    """Answers the config requests of :data:`CONFIG_RESPONSES`.

    Args:
        store: the items (shared with the HTTP APIs).
        users: the Nacos users and their tokens; auth is on when there are users.
        checker: the access keys; AK/SK signatures are checked when there are keys.
    """

    def __init__(self, store: ConfigStore, users: NacosUsers, checker: SignatureChecker) -> None:
        self._store = store
        self._users = users
        self._checker = checker

    def handle(self, message: Message, listens: Listens) -> Reply:
        """Answer one config request; ``listens`` is the table of the connection it came on."""
        response_type = CONFIG_RESPONSES[message.type]
        body = message.body
        try:
            self._authorize(message)
            if message.type == "ConfigBatchListenRequest":
                return self._listen(body, listens)
            key = nacos_key(_text(body, "dataId"), _text(body, "group"), _text(body, "tenant"))
            if message.type == "ConfigQueryRequest":
                return self._query(key)
            if message.type == "ConfigPublishRequest":
                return self._publish(key, body)
            self._store.delete(key)
            return success(response_type)
        except AccessDenied as exc:
            return failure(response_type, NO_RIGHT, str(exc))
        except NacosReject as exc:
            return failure(response_type, INVALID_PARAM, f"Param check invalid:{exc.message}")

    def _authorize(self, message: Message) -> None:
        headers = CIMultiDict(message.headers)
        self._users.check(_token(headers), headers.get("username"), headers.get("password"))
        if message.type == "ConfigBatchListenRequest":
            tenant = group = None  # a batch listen names no resource: ts alone is signed
        else:
            tenant, group = _text(message.body, "tenant"), _text(message.body, "group")
        self._checker.check_nacos_grpc(headers, tenant, group)

    def _query(self, key: ConfigKey) -> Reply:
        item = self._store.get(key)
        if item is None:
            return failure(
                "ConfigQueryResponse",
                NOT_FOUND,
                "config data not exist",
                lastModified=0,
                beta=False,
            )
        return success(
            "ConfigQueryResponse",
            content=item.content,
            encryptedDataKey=item.encrypted_data_key,
            contentType=item.config_type or "text",
            md5=item.utf8_md5,
            lastModified=int(item.last_modified * 1000),
            beta=False,
        )

    def _publish(self, key: ConfigKey, body: Mapping[str, Any]) -> Reply:
        try:
            content = check_content(_text(body, "content"))
        except InvalidParameterError as exc:
            raise NacosReject(400, str(exc)) from None
        raw_addition = body.get("additionMap")
        addition = raw_addition if isinstance(raw_addition, dict) else {}
        cas = _text(body, "casMd5")
        current = self._store.get(key)
        if cas and cas.strip() and current is not None and current.utf8_md5 != cas:
            return failure(
                "ConfigPublishResponse",
                SERVER_ERROR,
                "Cas publish fail, server md5 may have changed.",
            )
        config_type = _text(addition, "type")
        if config_type not in CONFIG_TYPES:
            config_type = "text"
        encrypted_data_key = (_text(addition, "encryptedDataKey") or "").strip() or None
        self._store.put(key, content, encrypted_data_key, config_type)
        return success("ConfigPublishResponse")

    def _listen(self, body: Mapping[str, Any], listens: Listens) -> Reply:
        contexts = body.get("configListenContexts") or []
        if not isinstance(contexts, list) or not all(isinstance(c, dict) for c in contexts):
            raise NacosReject(400, "configListenContexts must be a list of objects")
        # every key is checked before any is listened to: a bad one changes nothing
        entries = []
        for context in contexts:
            data_id, group = _text(context, "dataId"), _text(context, "group")
            tenant = _text(context, "tenant")
            key = nacos_key(data_id, group, tenant)
            entries.append((key, (data_id or "", group or "", tenant), _text(context, "md5")))
        changed: list[dict[str, str]] = []
        if body.get("listen", True) is False:
            for key, _, _ in entries:
                listens.pop(key, None)
            return success("ConfigChangeBatchListenResponse", changedConfigs=changed)
        # no await between reading the md5s and listening: no change can slip in between
        for key, named, md5 in entries:
            listens[key] = named
            if self._store.utf8_md5(key) != (md5 or ""):
                data_id, group, tenant = named
                entry = {"dataId": data_id, "group": group}
                if tenant is not None:
                    entry["tenant"] = tenant
                changed.append(entry)
        return success("ConfigChangeBatchListenResponse", changedConfigs=changed)
