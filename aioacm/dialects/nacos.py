"""Nacos's HTTP v1 config API as a dialect (NACOS.md §2 and §3), and nothing else.

Paths under the context path (``/nacos``), UTF-8 forms and contents, md5 over UTF-8 bytes, the
``Listening-Configs`` long poll and its headers, the address server's ``/nacos/serverlist``,
the default port 8848, login tokens (``Authorization: Bearer``), Nacos's AK/SK signature (what
it covers differs from ACM's), list pages (``search=accurate``; a 3.x server answers 410).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from .._version import __version__
from ..auth import ClientCredentials, Credentials, sign
from ..errors import (
    ACMRequestException,
    BadRequestError,
    ConflictError,
    InvalidParameterError,
    ServerUnavailableError,
)
from ..keys import Item, check_str, checked_data_id, checked_group, content_text
from ..wire import Fetched, Request, Response, Send, Server, ServerPlan, Signer
from . import Dialect
from .nacos_listen import (
    build_listen_response,
    encode_listen_record,
    parse_listen_records,
    parse_listen_response,
)

if TYPE_CHECKING:
    from ..nacos_auth import NacosLogin
    from ..options import Options
    from ..watch import ChangeFeed, ChangeSink

__all__ = [
    "DEFAULT_PORT",
    "NacosHttpDialect",
    "build_listen_response",
    "content_md5",
    "nacos_sign_headers",
    "nacos_sign_string",
    "normalize_group",
    "parse_listen_records",
    "parse_listen_response",
    "validate_data_id",
]

DEFAULT_PORT = 8848
ADDRESS_PORT = 8080
DEFAULT_CONTEXT_PATH = "/nacos"
CONFIG_PATH = "/v1/cs/configs"
LISTENER_PATH = "/v1/cs/configs/listener"
LISTEN_FIELD = "Listening-Configs"
POLL_TIMEOUT_HEADER = "Long-Pulling-Timeout"
POLL_NO_HANG_UP_HEADER = "Long-Pulling-Timeout-No-Hangup"
TYPE_HEADER = "Config-Type"
DATA_KEY_HEADER = "Encrypted-Data-Key"
DATA_KEY_FIELD = "encryptedDataKey"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
#: the namespace a 3.x server calls the default one; sent as "" (what 2.x expects)
PUBLIC_NAMESPACE = "public"

MAX_DATA_ID_LENGTH = 255  # the servers' column sizes
MAX_GROUP_LENGTH = 128
MAX_CONTENT_CHARS = 10 * 1024 * 1024  # nacos.config.maxContent's default
POLL_READ_MARGIN = 10.0
#: the config types a Nacos server knows (another is stored as ``text``)
CONFIG_TYPES = frozenset(("text", "json", "xml", "yaml", "html", "properties", "toml"))

_EXTRA_KEY_CHARS = frozenset("_-.:")
_PATH_PART = re.compile(r"(/[A-Za-z0-9._~-]+)*")


# -- keys and contents -------------------------------------------------------------------------


def _check_key_part(value: str, what: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidParameterError(
            f"Invalid {what}: longer than {limit} characters ({len(value)})"
        )
    for ch in value:
        # the server's rule is Java's Character.isLetterOrDigit per UTF-16 unit: letters and
        # decimal digits of the BMP, and _ - . :
        if ch in _EXTRA_KEY_CHARS or (ord(ch) < 0x10000 and (ch.isalpha() or ch.isdecimal())):
            continue
        raise InvalidParameterError(
            f"Invalid {what} {value!r}: Nacos allows only letters, digits and . : - _ (not {ch!r})"
        )
    return value


def validate_data_id(data_id: object) -> str:
    """Return ``data_id`` if Nacos accepts it, else raise InvalidParameterError."""
    return checked_data_id(data_id, _check_key_part, MAX_DATA_ID_LENGTH)


def normalize_group(group: object) -> str:
    """The group to use: ``DEFAULT_GROUP`` for None or blank, else the stripped group."""
    return checked_group(group, _check_key_part, MAX_GROUP_LENGTH)


def check_content(content: object) -> str:
    """The text to publish; bytes are taken as UTF-8. Nacos refuses blank content."""
    text = content_text(content)
    if not text.strip():
        raise InvalidParameterError("Nacos refuses blank content; use remove instead")
    if len(text) > MAX_CONTENT_CHARS:
        raise InvalidParameterError(
            f"content is {len(text)} characters; Nacos stores at most {MAX_CONTENT_CHARS}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidParameterError(f"content is not valid Unicode: {exc.reason}") from None
    return text


def content_md5(content: str | None) -> str:
    """The md5 Nacos compares: lowercase hex over the UTF-8 bytes; ``""`` for no value."""
    if content is None:
        return ""
    return hashlib.md5(content.encode("utf-8", errors="surrogatepass")).hexdigest()


def normalize_namespace(namespace: str) -> str:
    """The namespace id to send: ``public`` (3.x's name for the default one) is ``""``."""
    return "" if namespace == PUBLIC_NAMESPACE else namespace


def check_context_path(context_path: object) -> str:
    """``/nacos``-like: a leading slash, no trailing one, plain path characters only."""
    if context_path is None:
        return DEFAULT_CONTEXT_PATH
    value = check_str(context_path, "context_path").strip()
    if value in ("", "/"):
        return ""
    if not value.startswith("/"):
        value = "/" + value
    value = value.rstrip("/")
    if not _PATH_PART.fullmatch(value):
        raise InvalidParameterError(f"context_path must be a plain path like /nacos, not {value!r}")
    return value


# -- signing -----------------------------------------------------------------------------------


def nacos_sign_string(tenant: str | None, group: str | None, timestamp: str) -> str:
    """What Nacos's AK/SK signature covers: ``tenant+group+ts`` with a tenant (even without
    a group), ``group+ts`` with only a group, and the timestamp alone otherwise."""
    if tenant:
        return f"{tenant}+{group or ''}+{timestamp}"
    if group:
        return f"{group}+{timestamp}"
    return timestamp


def nacos_sign_headers(
    credentials: Credentials, tenant: str | None, group: str | None, timestamp_ms: int
) -> dict[str, str]:
    """The ``Spas-*`` headers of one request, as MSE checks them."""
    ts = str(timestamp_ms)
    headers = {
        "Spas-AccessKey": credentials.access_key,
        "Timestamp": ts,
        "Spas-Signature": sign(credentials.secret_key, nacos_sign_string(tenant, group, ts)),
    }
    if credentials.security_token:
        headers["Spas-SecurityToken"] = credentials.security_token
    return headers


# -- the dialect -------------------------------------------------------------------------------

_ACK_ANSWERS = frozenset((200,))
_CAS_ANSWERS = frozenset((200, 500))


def cas_failure(reason: str, response: Response, item: Item) -> ACMRequestException:
    """The error of a compare-and-set publish answered 500: ``ConflictError`` when Nacos says
    the compare-and-set failed (2.x and gRPC say "Cas publish fail..."; 3.x's v1 API answers
    a bare ``false`` with the exception's code, 500), ``ServerUnavailableError`` otherwise."""
    if "cas publish fail" in reason.lower() or reason.strip() == "false":
        return ConflictError(
            f"the item changed since the md5 given (cas_md5): {reason}",
            status=response.status,
            server=response.server,
            key=item.key,
        )
    return ServerUnavailableError(
        f"the server failed the publish: {reason or 'no reason given'}",
        status=response.status,
        server=response.server,
        key=item.key,
    )


class NacosHttpDialect(Dialect):
    """Nacos's HTTP v1 API for one client.

    Args:
        servers: the servers, when given as a list (else ``endpoint`` names an address server).
        endpoint: ``host[:port]`` of an address server, or None.
        context_path: ``/nacos`` by default.
        namespace: the namespace id ("" for the public one).
        options: the client's live options.
        credentials: the client's live AK/SK or RAM role credentials.
        login: the username/password login, if any.
    """

    name = "nacos-http"

    def __init__(
        self,
        servers: tuple[Server, ...],
        endpoint: str | None,
        context_path: str,
        namespace: str,
        options: Options,
        credentials: ClientCredentials,
        login: NacosLogin | None,
    ) -> None:
        self.servers = servers
        self.endpoint = endpoint
        self.context_path = context_path
        self.namespace = namespace
        self._options = options
        self._credentials = credentials
        self.login = login
        self._config_path = context_path + CONFIG_PATH
        self._listener_path = context_path + LISTENER_PATH
        self._tenant: tuple[tuple[str, str], ...] = (("tenant", namespace),) if namespace else ()
        self._common: dict[tuple[str, bool], dict[str, str]] = {}
        self._poll_headers: dict[tuple[int, bool], dict[str, str]] = {}

    def check_key(self, data_id: object, group: object) -> tuple[str, str]:
        return validate_data_id(data_id), normalize_group(group)

    def check_content(self, content: object) -> str:
        return check_content(content)

    def content_md5(self, content: str | None) -> str:
        return content_md5(content)

    def _scope(self, group: str | None) -> tuple[str | None, str | None]:
        return (self.namespace or None, group)

    # -- requests and answers --------------------------------------------------------------

    def query(self, item: Item) -> Request:
        return Request(
            "GET",
            self._config_path,
            query=(("dataId", item.data_id), ("group", item.group), *self._tenant),
            scope=self._scope(item.group),
        )

    def read_query(self, response: Response, item: Item) -> Fetched | None:
        if response.status == 404:
            return None
        headers = response.headers
        data_key = (headers.get(DATA_KEY_HEADER) or None) if item.envelope else None
        return Fetched(
            response.body.decode("utf-8", errors="replace"),
            data_key,
            headers.get(TYPE_HEADER) or None,
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
        form: list[tuple[str, str]] = [
            ("dataId", item.data_id),
            ("group", item.group),
            ("content", content),
            *self._tenant,
        ]
        if config_type is not None:
            form.append(("type", config_type))
        if data_key is not None:
            form.append((DATA_KEY_FIELD, data_key))
        app_name = self._options.app_name
        if app_name:
            form.append(("appName", app_name))
        headers = {"casMd5": cas_md5} if cas_md5 is not None else None
        return Request(
            "POST",
            self._config_path,
            body=urlencode(form).encode("ascii"),
            headers=headers,
            scope=self._scope(item.group),
            # Nacos answers a failed compare-and-set with a 500: read it, not the next server
            answers=_CAS_ANSWERS if cas_md5 is not None else _ACK_ANSWERS,
        )

    def remove(self, item: Item) -> Request:
        return Request(
            "DELETE",
            self._config_path,
            query=(("dataId", item.data_id), ("group", item.group), *self._tenant),
            scope=self._scope(item.group),
            answers=frozenset((200,)),
        )

    def read_ack(self, response: Response, item: Item) -> None:
        if response.status == 500:
            reason = response.body[:200].decode("utf-8", errors="replace").strip()
            raise cas_failure(reason, response, item)
        if response.body.strip() != b"true":
            raise ACMRequestException(
                "the server did not confirm the change",
                status=response.status,
                server=response.server,
                key=item.key,
            )

    def list_page(self, page: int, size: int) -> Request:
        return Request(
            "GET",
            self._config_path,
            query=(
                ("search", "accurate"),
                ("dataId", ""),
                ("group", ""),
                ("pageNo", page),
                ("pageSize", size),
                *self._tenant,
            ),
            scope=self._scope(None),
            answers=frozenset((200, 404, 410, 501)),
        )

    def read_page(self, response: Response) -> dict[str, Any]:
        if response.status != 200:
            raise BadRequestError(
                "this Nacos server does not serve the v1 list API (Nacos 3.x turns it off:"
                " set nacos.core.api.compatibility.console.enabled=true on the server to"
                " list through it)",
                status=response.status,
                server=response.server,
            )
        try:
            data = json.loads(response.body.decode("utf-8", errors="replace"))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ACMRequestException("list answered with malformed JSON", server=response.server)
        for entry in data.get("pageItems") or ():
            if isinstance(entry, dict) and "tenant" in entry:
                entry["tenant"] = normalize_namespace(entry["tenant"] or "")
        return data

    # -- servers, framing, auth ------------------------------------------------------------

    def server_plan(self) -> ServerPlan:
        if self.endpoint is None:
            name = ",".join(f"{host}:{port}" for host, port in self.servers)
            return ServerPlan(name, self.servers, default_port=DEFAULT_PORT)
        endpoint = self.endpoint if ":" in self.endpoint else f"{self.endpoint}:{ADDRESS_PORT}"
        url = f"http://{endpoint}{self.context_path or DEFAULT_CONTEXT_PATH}/serverlist"
        return ServerPlan(self.endpoint, address_url=url, default_port=DEFAULT_PORT)

    def common_headers(self, body: bool) -> Mapping[str, str]:
        app_name = self._options.app_name
        headers = self._common.get((app_name, body))
        if headers is None:
            headers = {"Client-Version": f"aioacm/{__version__}", "User-Agent": "aioacm"}
            if app_name:
                headers["AppName"] = app_name
            if body:
                headers["Content-Type"] = FORM_CONTENT_TYPE
            self._common[(app_name, body)] = headers
        return headers

    def signer(self) -> Signer | None:
        login = self.login
        keys = self._credentials.configured
        if self._options.auth_enabled is False:
            keys = False
        if login is None and not keys:
            return None
        if login is None:
            return self._sign_keys
        if not keys:
            return login.headers
        return self._sign_both

    async def _sign_keys(self, request: Request) -> Mapping[str, str]:
        credentials = await self._credentials.get_credentials()
        tenant, group = request.scope
        return nacos_sign_headers(credentials, tenant, group, int(time.time() * 1000))

    async def _sign_both(self, request: Request) -> Mapping[str, str]:
        assert self.login is not None
        headers = dict(await self.login.headers(request))
        headers.update(await self._sign_keys(request))
        return headers

    def denied_hint(self) -> str:
        checks = []
        if self.login is not None:
            checks.append("the username and password")
        if self._credentials.configured and self._options.auth_enabled is not False:
            checks.append("the AccessKey/SecretKey")
        if not checks:
            return "the server wants credentials: give username and password"
        return f"check {' and '.join(checks)} and that they may use this namespace"

    async def refused(
        self, request: Request, reason: str = "", sent: Mapping[str, str] | None = None
    ) -> bool:
        if self.login is None:
            return False
        return self.login.refused(reason, sent)

    def attach(self, send: Send | None) -> None:
        if self.login is not None:
            self.login.attach(send)

    # -- watching: the long poll -------------------------------------------------------------

    def change_feed(self, sink: ChangeSink, send: Send, options: Options) -> ChangeFeed:
        from ..polling import LongPollFeed

        return LongPollFeed(sink, send, self, options)

    def listen_record(self, item: Item, md5: str) -> str:
        return encode_listen_record(item.data_id, item.group, md5, self.namespace)

    def listen_request(self, records: str, *, first: bool) -> Request:
        hold = int(self._options.pulling_timeout * 1000)
        headers = self._poll_headers.get((hold, first))
        if headers is None:
            headers = {POLL_TIMEOUT_HEADER: str(hold)}
            if first:
                headers[POLL_NO_HANG_UP_HEADER] = "true"
            self._poll_headers[(hold, first)] = headers
        # the tenant field: with auth on, the server checks permissions against it
        tenant = f"&tenant={quote(self.namespace, safe='')}" if self.namespace else ""
        body = f"{LISTEN_FIELD}={records}{tenant}".encode("ascii")
        return Request(
            "POST",
            self._listener_path,
            body=body,
            headers=headers,
            scope=(None, None),  # a batch listen signs the timestamp alone
            answers=frozenset((200,)),
        )

    def listen_timeout(self) -> float:
        return self._options.pulling_timeout + POLL_READ_MARGIN

    def read_listen(self, response: Response) -> list[tuple[str, str, str]] | None:
        if response.status != 200:
            return None
        keys = parse_listen_response(response.body)
        if keys is None:
            return None
        return [(data_id, group, normalize_namespace(tenant)) for data_id, group, tenant in keys]
