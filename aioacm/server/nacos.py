"""The Nacos side of the bundled server: the HTTP v1 config API, login, the v3 client read and
readiness under ``/nacos``, over the same store as the ACM API (NACOS.md §1-3).

It answers as a Nacos 2.x server does: UTF-8 contents and md5s, ``Config-Type``, 404 for a
missing item, ``true`` for a publish or a delete, a listener that holds ``max(10 s, timeout −
0.5 s)`` and answers the URL-encoded records of the keys that changed. With users
(``LocalACMServer(users=...)``) auth is on: every config request needs a token from a login
(``Authorization: Bearer``, or an ``accessToken`` parameter), else 403. With access keys
(``credentials``) the ``Spas-*`` headers are checked with Nacos's sign rule, as MSE does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hmac
import json
import math
import secrets
import time
from collections.abc import Callable, Mapping
from email.utils import formatdate
from urllib.parse import parse_qsl

from aiohttp import web

from ..dialects.nacos import (
    CONFIG_TYPES,
    build_listen_response,
    check_content,
    normalize_group,
    normalize_namespace,
    parse_listen_records,
    validate_data_id,
)
from ..errors import InvalidParameterError
from ..keys import validate_namespace
from .security import AccessDenied, SignatureChecker
from .store import ConfigItem, ConfigKey, ConfigStore

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "NacosAPI",
    "NacosReject",
    "NacosUsers",
    "nacos_key",
    "nacos_tenant",
]

DEFAULT_TOKEN_TTL = 18000.0
#: The shortest hold of a listener, whatever the client asks (as Nacos does).
MIN_HOLD_MS = 10_000
HOLD_MARGIN_MS = 500
MAX_LISTEN_KEYS = 10_000
MAX_PAGE_SIZE = 500


class NacosReject(Exception):
    """Answer this status and message instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NacosUsers:
    """Nacos's users and the tokens their logins got.

    Args:
        users: ``{username: password}``; empty turns auth off.
        token_ttl: seconds a token is valid.
        clock: the monotonic clock token ages are measured with.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self._users = dict(users or {})
        self.token_ttl = token_ttl
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expires at)
        #: logins answered (failed ones too)
        self.logins = 0

    @property
    def enabled(self) -> bool:
        """Whether config requests need a token."""
        return bool(self._users)

    def add(self, username: str, password: str) -> None:
        """Add (or change) a user; this turns auth on."""
        if not username or not password:
            raise ValueError("username and password must be non-empty")
        self._users[username] = password

    def login(self, username: str, password: str) -> str | None:
        """A new token for a right password, else None."""
        self.logins += 1
        expected = self._users.get(username)
        if expected is None or not hmac.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        ):
            return None
        token = secrets.token_urlsafe(24)
        now = self._clock()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}  # forget expired
        self._tokens[token] = (username, now + self.token_ttl)
        return token

    def expire_all(self) -> None:
        """Make every token issued so far invalid (as a server restart with a new key does)."""
        self._tokens.clear()

    def check(
        self, token: str | None, username: str | None = None, password: str | None = None
    ) -> None:
        """Raise AccessDenied unless ``token`` is a valid, unexpired token of a known user, or,
        with no token, ``username`` and ``password`` are right (Nacos takes them on any
        request; the npm client sends them instead of logging in)."""
        if not self.enabled:
            return
        if not token and username and password is not None:
            expected = self._users.get(username)
            if expected is None or not hmac.compare_digest(
                expected.encode("utf-8"), password.encode("utf-8")
            ):
                raise AccessDenied("unknown user!")
            return
        if not token:
            raise AccessDenied("user not found!")
        entry = self._tokens.get(token)
        if entry is None:
            raise AccessDenied("token invalid!")
        user, expires = entry
        if self._clock() >= expires or user not in self._users:
            raise AccessDenied("token expired!")


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(
        body=body.encode("utf-8"),
        status=status,
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )


def _json(document: object, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(document, ensure_ascii=False).encode("utf-8"),
        status=status,
        headers={"Content-Type": "application/json;charset=UTF-8"},
    )


def _fields(request: web.Request, body: bytes) -> dict[str, str]:
    """Form fields (UTF-8 unless the request says otherwise), then query parameters."""
    fields: dict[str, str] = {}
    form: list[tuple[str, str]] = []
    if body and request.content_type == "application/x-www-form-urlencoded":
        charset = request.charset or "utf-8"
        try:
            form = parse_qsl(
                body.decode(charset), keep_blank_values=True, encoding=charset, errors="strict"
            )
        except (LookupError, UnicodeDecodeError, ValueError) as exc:
            raise NacosReject(400, f"bad form body: {exc}") from None
    for name, value in [*form, *request.query.items()]:
        fields.setdefault(name, value)
    return fields


def nacos_tenant(raw: str | None) -> str:
    """The store's namespace id for a Nacos ``tenant`` (``public`` and blank are ``""``).

    Raises:
        NacosReject: 400, a namespace id Nacos refuses.
    """
    try:
        return normalize_namespace(validate_namespace(raw or None))
    except InvalidParameterError as exc:
        raise NacosReject(400, str(exc)) from None


def nacos_key(data_id: str | None, group: str | None, tenant: str | None) -> ConfigKey:
    """The store's key for a Nacos request's ``dataId``, ``group`` and ``tenant``.

    Raises:
        NacosReject: 400, a missing or bad dataId or group, or a bad namespace id.
    """
    if not data_id or not (group or "").strip():
        raise NacosReject(400, "dataId and group are required")
    try:
        return ConfigKey(nacos_tenant(tenant), normalize_group(group), validate_data_id(data_id))
    except InvalidParameterError as exc:
        raise NacosReject(400, str(exc)) from None


def _int(fields: Mapping[str, str], name: str, default: int) -> int:
    raw = fields.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise NacosReject(400, f"{name} must be an integer, not {raw!r}") from None


class NacosAPI:
    """The Nacos handlers of one server run.

    Args:
        store: the items (shared with the ACM API).
        users: the users and tokens.
        checker: the access keys, checked with Nacos's sign rule.
        stopping: set when the server stops (held listeners answer at once).
    """

    def __init__(
        self,
        store: ConfigStore,
        users: NacosUsers,
        checker: SignatureChecker,
        stopping: asyncio.Event,
    ) -> None:
        self._store = store
        self._users = users
        self._checker = checker
        self._stopping = stopping

    async def handle(self, request: web.Request, op: str, body: bytes) -> web.Response:
        """Answer one request under ``/nacos`` (``op`` from ``ops.classify``)."""
        try:
            return await self._handle(request, op, body)
        except NacosReject as exc:
            return _text(exc.message, exc.status)
        except AccessDenied as exc:
            return _text(str(exc), 403)

    async def _handle(self, request: web.Request, op: str, body: bytes) -> web.Response:
        if op == "health":
            return _text("OK")
        if op == "other":
            return _text("not found", 404)
        fields = _fields(request, body)
        if op == "login":
            return self._login(request, fields)
        if op == "address":
            return _text(f"{request.host}\n")
        self._users.check(_token(request, fields), fields.get("username"), fields.get("password"))
        if op == "poll":
            return await self._listen(request, fields)
        if op == "list":
            self._check_keys(request, fields.get("tenant"), None)
            return self._list(fields)
        v3 = request.path.startswith("/nacos/v3/")
        group = fields.get("groupName" if v3 else "group")
        tenant = fields.get("namespaceId" if v3 else "tenant")
        key = nacos_key(fields.get("dataId"), group, tenant)
        self._check_keys(request, key.tenant, key.group)
        if op == "get":
            return self._get_v3(key) if v3 else self._get(key)
        if op == "publish":
            return self._publish(request, key, fields)
        self._store.delete(key)
        return _text("true")

    def _check_keys(self, request: web.Request, tenant: str | None, group: str | None) -> None:
        if self._checker.enabled:
            self._checker.check_nacos(request.headers, tenant, group)

    def _login(self, request: web.Request, fields: Mapping[str, str]) -> web.Response:
        username, password = fields.get("username", ""), fields.get("password", "")
        token = self._users.login(username, password)
        if token is None:
            return _text("unknown user!", 403)
        ttl = self._users.token_ttl
        return _json(
            {
                "accessToken": token,
                "tokenTtl": int(ttl) if float(ttl).is_integer() else ttl,
                "globalAdmin": True,
                "username": username,
            }
        )

    def _get(self, key: ConfigKey) -> web.Response:
        item = self._store.get(key)
        if item is None:
            return _text("config data not exist", 404)
        headers = {
            "Content-Type": "text/plain;charset=UTF-8",
            "Config-Type": item.config_type or "text",
            "Content-MD5": item.utf8_md5,
            "Last-Modified": formatdate(item.last_modified, usegmt=True),
        }
        if item.encrypted_data_key:
            headers["Encrypted-Data-Key"] = item.encrypted_data_key
        return web.Response(body=item.content.encode("utf-8"), headers=headers)

    def _get_v3(self, key: ConfigKey) -> web.Response:
        item = self._store.get(key)
        if item is None:
            return _json({"code": 20004, "message": "resource not found", "data": None})
        data = {
            "resultCode": 200,
            "errorCode": 0,
            "content": item.content,
            "encryptedDataKey": item.encrypted_data_key,
            "contentType": item.config_type or "text",
            "md5": item.utf8_md5,
            "lastModified": int(item.last_modified * 1000),
            "beta": False,
        }
        return _json({"code": 0, "message": "success", "data": data})

    def _publish(
        self, request: web.Request, key: ConfigKey, fields: Mapping[str, str]
    ) -> web.Response:
        try:
            content = check_content(fields.get("content"))
        except InvalidParameterError as exc:
            raise NacosReject(400, str(exc)) from None
        cas = request.headers.get("casMd5")
        current = self._store.get(key)
        if cas is not None and current is not None and current.utf8_md5 != cas:
            return _text("Cas publish fail, server md5 may have changed.", 500)
        config_type = fields.get("type") or "text"
        if config_type not in CONFIG_TYPES:
            config_type = "text"
        self._store.put(key, content, fields.get("encryptedDataKey") or None, config_type)
        return _text("true")

    def _list(self, fields: Mapping[str, str]) -> web.Response:
        tenant = nacos_tenant(fields.get("tenant"))
        search = fields.get("search", "accurate")
        data_id, group = fields.get("dataId", ""), fields.get("group", "")
        page_no = _int(fields, "pageNo", 1)
        page_size = min(_int(fields, "pageSize", 100), MAX_PAGE_SIZE)
        if page_no < 1 or page_size < 1:
            raise NacosReject(400, "pageNo and pageSize must be at least 1")

        def matches(value: str, wanted: str) -> bool:
            if not wanted:
                return True
            if search == "blur" and "*" in wanted:
                return fnmatch.fnmatchcase(value, wanted.replace("[", "[[]"))
            return value == wanted

        items = [
            item
            for item in self._store.items(tenant)
            if matches(item.data_id, data_id) and matches(item.group, group)
        ]
        start = (page_no - 1) * page_size
        return _json(
            {
                "totalCount": len(items),
                "pageNumber": page_no,
                "pagesAvailable": math.ceil(len(items) / page_size),
                "pageItems": [_page_item(i, item) for i, item in enumerate(items[start:], start)][
                    :page_size
                ],
            }
        )

    async def _listen(self, request: web.Request, fields: Mapping[str, str]) -> web.Response:
        probe = fields.get("Listening-Configs")
        if probe is None:
            raise NacosReject(400, "Listening-Configs is required")
        try:
            entries = parse_listen_records(probe)
        except ValueError as exc:
            raise NacosReject(400, str(exc)) from None
        if len(entries) > MAX_LISTEN_KEYS:
            raise NacosReject(400, f"too many keys ({len(entries)} > {MAX_LISTEN_KEYS})")
        self._check_keys(request, None, None)  # a batch listen signs the timestamp alone
        listened: dict[ConfigKey, str] = {}
        for data_id, group, md5, tenant in entries:
            listened[nacos_key(data_id, group, tenant)] = md5
        store = self._store
        changed = [key for key, md5 in listened.items() if store.utf8_md5(key) != md5]
        raw_timeout = request.headers.get("Long-Pulling-Timeout")
        no_hang_up = request.headers.get("Long-Pulling-Timeout-No-Hangup", "").lower() == "true"
        if changed or raw_timeout is None or no_hang_up or self._stopping.is_set():
            return self._listen_answer(changed)
        try:
            timeout_ms = int(raw_timeout)
        except ValueError:
            raise NacosReject(400, "Long-Pulling-Timeout must be an integer") from None
        hold = max(MIN_HOLD_MS, timeout_ms - HOLD_MARGIN_MS) / 1000
        # no await between comparing the md5s and registering the watch
        with store.watch(listened) as watch, contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(watch.event.wait(), hold)
        return self._listen_answer(
            [
                key
                for key in listened
                if key in watch.changed and store.utf8_md5(key) != listened[key]
            ]
        )

    @staticmethod
    def _listen_answer(keys: list[ConfigKey]) -> web.Response:
        return _text(build_listen_response((k.data_id, k.group, k.tenant) for k in keys))


def _page_item(index: int, item: ConfigItem) -> dict[str, object]:
    return {
        "id": str(index + 1),
        "dataId": item.data_id,
        "group": item.group,
        "content": item.content,
        "md5": item.utf8_md5,
        "tenant": item.tenant,
        "type": item.config_type or "text",
        "encryptedDataKey": item.encrypted_data_key or "",
    }


def _token(request: web.Request, fields: Mapping[str, str]) -> str | None:
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer "):
        return bearer[len("Bearer ") :]
    return request.headers.get("accessToken") or fields.get("accessToken")
