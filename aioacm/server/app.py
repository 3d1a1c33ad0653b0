"""The aiohttp application: every ACM endpoint of PROTOCOL.md section 2 on one port.

One catch-all route sends each request through :meth:`ACMApplication.dispatch`, which logs it,
applies any injected fault and then calls the handler for its operation.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from email.utils import formatdate
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict

from ..dialects.acm import (
    build_poll_response,
    encode_content,
    normalize_group,
    parse_probe,
    validate_data_id,
)
from ..errors import InvalidParameterError
from ..keys import validate_namespace
from .faults import FaultInjector
from .nacos import NacosAPI, NacosUsers
from .ops import NACOS_PREFIX, PREFIX, classify
from .records import RequestRecord
from .security import AccessDenied, SignatureChecker
from .store import ConfigKey, ConfigStore

__all__ = ["ACMApplication"]

logger = logging.getLogger("aioacm.server")

MAX_PROBE_KEYS = 10000
DEFAULT_POLL_TIMEOUT_MS = 30_000
#: A held poll answers this long before the client's own timeout, as ACM and Nacos do.
POLL_MARGIN_MS = 500
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_BODY_BYTES = 16 * 1024 * 1024

#: Resolves the address-server answer: ``(request, unit or None) -> ["host:port", ...]``.
AddressResolver = Callable[[web.Request, str | None], list[str]]


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(body: str, status: int = 200, charset: str = "utf-8") -> web.Response:
    return web.Response(
        body=body.encode(charset),
        status=status,
        headers={"Content-Type": f"text/plain;charset={charset}"},
    )


def _read_form(request: web.Request, body: bytes) -> list[tuple[str, str]]:
    """Decode a form body whose values are percent-encoded bytes of the request's charset."""
    if not body:
        return []
    charset = request.charset or "gbk"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise _Reject(400, f"unknown charset {charset!r}") from None
    try:
        text = body.decode(charset)
        return parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Reject(400, f"form body is not valid {charset}: {exc}") from None


def _fields(request: web.Request, body: bytes) -> dict[str, str]:
    """The request's parameters: form body fields first, then query parameters."""
    fields: dict[str, str] = {}
    for name, value in [*_read_form(request, body), *request.query.items()]:
        fields.setdefault(name, value)
    return fields


def _key(fields: Mapping[str, str]) -> ConfigKey:
    if not fields.get("dataId"):
        raise _Reject(400, "dataId is required")
    try:
        data_id = validate_data_id(fields["dataId"])
        group = normalize_group(fields.get("group"))
        tenant = validate_namespace(fields.get("tenant"))
    except InvalidParameterError as exc:
        raise _Reject(400, str(exc)) from None
    return ConfigKey(tenant, group, data_id)


def _int_param(fields: Mapping[str, str], name: str, default: int) -> int:
    raw = fields.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _Reject(400, f"{name} must be an integer, not {raw!r}") from None


class ACMApplication:
    """The request handlers of one server run (a new one for each ``start()``).

    Args:
        store: the items.
        faults: the injected faults.
        checker: the signature checker.
        log: called with the record of every request as it arrives.
        addresses: resolves what the address server answers.
        users: the Nacos users and their tokens.
    """

    def __init__(
        self,
        store: ConfigStore,
        faults: FaultInjector,
        checker: SignatureChecker,
        log: Callable[[RequestRecord], None],
        addresses: AddressResolver,
        users: NacosUsers | None = None,
    ) -> None:
        self._store = store
        self._faults = faults
        self._checker = checker
        self._log = log
        self._addresses = addresses
        self.stopping = asyncio.Event()
        self._nacos = NacosAPI(store, users or NacosUsers(None), checker, self.stopping)

    def build(self) -> web.Application:
        """Create the aiohttp application."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    def stop(self) -> None:
        """End held polls and fault delays now: the server is stopping."""
        self.stopping.set()
        self._store.wake_all()

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Log the request, apply a fault if one matches, else answer it."""
        op = classify(
            request.method, request.path, request.query.get("method"), "search" in request.query
        )
        record = RequestRecord(
            op=op,
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers=CIMultiDict(request.headers),
            body=b"",
        )
        self._log(record)
        try:
            record.body = await request.read()
            response = await self._answer(request, record)
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        except Exception:
            record.status = 500
            raise
        logger.debug(
            # the path only: a query may carry a token, or a password (old Nacos clients)
            "%s %s %s -> %s",
            op,
            request.method,
            request.path,
            record.status or "dropped",
        )
        return response

    async def _answer(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        fault = self._faults.take(record.op)
        if fault is not None:
            record.fault = fault
            if fault.delay:
                await self._sleep(fault.delay)
            if fault.drop:
                if request.transport is not None:
                    request.transport.close()
                # Never sent: aiohttp finds the transport closed and drops the response.
                return web.Response(status=500)
            if fault.status is not None:
                record.status = fault.status
                response = _text(fault.body, fault.status)
                if fault.truncate is None:
                    return response
                return await self._truncated(request, response, fault.truncate)
        try:
            response = await self._handle(request, record)
        except _Reject as exc:
            response = _text(exc.message, exc.status)
        except AccessDenied as exc:
            logger.info("refused %s %s: %s", record.op, request.path, exc)
            response = _text(f"no right: {exc}", 403)
        record.status = response.status
        if fault is not None and fault.truncate is not None:
            return await self._truncated(request, response, fault.truncate)
        return response

    @staticmethod
    async def _truncated(
        request: web.Request, response: web.Response, keep: int
    ) -> web.StreamResponse:
        """Send ``response``'s headers and the first ``keep`` bytes of its body, then hang up."""
        body = response.body if isinstance(response.body, bytes) else b""
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[:keep])
        if request.transport is not None:
            request.transport.close()  # what was written goes out first, then the FIN
        return stream

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)

    async def _handle(self, request: web.Request, record: RequestRecord) -> web.Response:
        op = record.op
        if request.path.startswith(NACOS_PREFIX + "/"):
            return await self._nacos.handle(request, op, record.body)
        if op == "other":
            return _text("not found", 404)
        if op == "address":
            return self._address(request)
        fields = _fields(request, record.body)
        if op == "poll":
            return await self._poll(request, fields)
        if op == "list":
            return self._list(request, fields)
        tenant, group = fields.get("tenant"), fields.get("group")
        self._checker.check(
            request.headers, [(tenant, group)], require_signature=bool(tenant or group)
        )
        key = _key(fields)
        if op == "get":
            return self._get(key)
        if op == "publish":
            return self._publish(key, fields)
        self._store.delete(key)
        logger.debug("removed %s", key)
        return _text("true")

    def _address(self, request: web.Request) -> web.Response:
        name = request.path[len(PREFIX) + 1 :]
        unit = name[len("diamond-unit-") :] if name.startswith("diamond-unit-") else None
        return _text("\n".join(self._addresses(request, unit)))

    def _get(self, key: ConfigKey) -> web.Response:
        item = self._store.get(key)
        if item is None:
            return _text("config data not exist", 404)
        headers = {
            "Content-Type": "text/plain;charset=GBK",
            "Content-MD5": item.md5,
            "Last-Modified": formatdate(item.last_modified, usegmt=True),
        }
        if item.encrypted_data_key:
            headers["Encrypted-Data-Key"] = item.encrypted_data_key
        return web.Response(body=item.content.encode("gbk", errors="replace"), headers=headers)

    def _publish(self, key: ConfigKey, fields: Mapping[str, str]) -> web.Response:
        content = fields.get("content")
        if content is None:
            raise _Reject(400, "content is required")
        try:
            encode_content(content)
        except InvalidParameterError as exc:
            raise _Reject(400, str(exc)) from None
        item = self._store.put(key, content, fields.get("encryptedDataKey") or None)
        logger.debug("published %s md5=%s content=%.40r", key, item.md5, content)
        return _text("true")

    def _list(self, request: web.Request, fields: Mapping[str, str]) -> web.Response:
        raw_tenant = fields.get("tenant")
        self._checker.check(
            request.headers, [(raw_tenant, None)], require_signature=bool(raw_tenant)
        )
        try:
            tenant = validate_namespace(raw_tenant)
        except InvalidParameterError as exc:
            raise _Reject(400, str(exc)) from None
        page_no = _int_param(fields, "pageNo", 1)
        page_size = min(_int_param(fields, "pageSize", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
        if page_no < 1 or page_size < 1:
            raise _Reject(400, "pageNo and pageSize must be at least 1")
        items = self._store.items(tenant)
        start = (page_no - 1) * page_size
        document = {
            "totalCount": len(items),
            "pageNumber": page_no,
            "pagesAvailable": math.ceil(len(items) / page_size),
            "pageItems": [
                {
                    "dataId": item.data_id,
                    "group": item.group,
                    "content": item.content,
                    "tenant": item.tenant,
                    "md5": item.md5,
                }
                for item in items[start : start + page_size]
            ],
        }
        # ensure_ascii: the body is then valid GBK *and* UTF-8. The sync SDK decodes the list
        # as UTF-8 although ACM declares GBK, and would die on raw GBK Chinese.
        body = json.dumps(document, ensure_ascii=True).encode("gbk")
        return web.Response(body=body, headers={"Content-Type": "application/json;charset=GBK"})

    async def _poll(self, request: web.Request, fields: Mapping[str, str]) -> web.Response:
        probe = fields.get("Probe-Modify-Request")
        if probe is None:
            raise _Reject(400, "Probe-Modify-Request is required")
        try:
            entries = parse_probe(probe)
        except ValueError as exc:
            raise _Reject(400, str(exc)) from None
        if not entries:
            raise _Reject(400, "the probe names no key")
        if len(entries) > MAX_PROBE_KEYS:
            raise _Reject(400, f"too many keys in one probe ({len(entries)} > {MAX_PROBE_KEYS})")
        tenants = sorted({tenant for _, _, _, tenant in entries if tenant})
        self._checker.check(
            request.headers, [(None, None), *((t, None) for t in tenants)], require_signature=False
        )
        probed: dict[ConfigKey, str] = {}
        for data_id, group, md5, tenant in entries:
            probed[_key({"dataId": data_id, "group": group, "tenant": tenant})] = md5
        timeout_ms = _int_param(request.headers, "longPullingTimeout", DEFAULT_POLL_TIMEOUT_MS)
        no_hang_up = request.headers.get("longPullingNoHangUp", "").lower() == "true"

        changed = [key for key, md5 in probed.items() if self._store.md5(key) != md5]
        if changed or no_hang_up or self.stopping.is_set():
            return self._poll_answer(changed)
        hold = max(0.0, (timeout_ms - POLL_MARGIN_MS) / 1000)
        # No await between the md5 comparison above and registering the watch: no change
        # can slip in between.
        with self._store.watch(probed) as watch, contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(watch.event.wait(), hold)
        return self._poll_answer([key for key in probed if key in watch.changed])

    @staticmethod
    def _poll_answer(keys: list[ConfigKey]) -> web.Response:
        body = build_poll_response((key.data_id, key.group, key.tenant) for key in keys)
        return _text(body)
