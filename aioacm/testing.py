"""Fake ECS metadata and KMS services (aiohttp.web on loopback), for testing code that uses a
RAM role or KMS ``cipher-`` items without a cloud: aioacm's own tests use them, and so can yours.

They answer what the real services answer, as far as aioacm and the Tea SDK use them, and check
what the real ones check: the metadata service its hardened-mode token, KMS the request's
ACS3-HMAC-SHA256 signature with the caller's secret and STS token. Use them with the bundled
``aioacm.server.LocalACMServer``::

    async with LocalACMServer() as acm, FakeMetadataServer("role") as metadata:
        metadata.on_issue.append(lambda sts: acm.add_credentials(*sts.as_tuple()))
        ...  # ACMClient(acm.endpoint, ram_role_name="role", ram_metadata_url=metadata.url)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

__all__ = ["FakeKMS", "FakeMetadataServer", "Issued", "KMSCall", "MetadataRequest"]

ROLE_PATH = "/latest/meta-data/ram/security-credentials/"
TOKEN_PATH = "/latest/api/token"


_S = TypeVar("_S", bound="_Service")


class _Service:
    """An aiohttp.web app on 127.0.0.1 with a free port."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self: _S) -> _S:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"


@dataclass(frozen=True)
class Issued:
    """One set of STS credentials the metadata service handed out."""

    access_key: str
    secret_key: str
    security_token: str
    expiration: float  # on the metadata service's clock

    def as_tuple(self) -> tuple[str, str, str]:
        """``(access_key, secret_key, security_token)``, as ``add_credentials`` takes them."""
        return self.access_key, self.secret_key, self.security_token

    def __repr__(self) -> str:
        return f"Issued(access_key={self.access_key!r}, expiration={self.expiration!r})"


@dataclass
class MetadataRequest:
    method: str
    path: str
    headers: dict[str, str]


class FakeMetadataServer(_Service):
    """The ECS instance metadata service for one RAM role.

    Attributes:
        role: the role it knows; other names get 404.
        ttl: seconds each issued set of credentials lives.
        clock_skew: seconds this service's clock (its ``Date`` and ``Expiration``) is ahead.
        token_mode: "optional" (hardened mode offered, plain GET accepted), "required" (a GET
            without a valid token is 401) or "off" (the token PUT is 404, as on old images).
        fail_status: answer credential GETs with this status instead (None: succeed).
        code: the ``Code`` field answered.
        delay: seconds to wait before answering credential GETs.
        on_issue: called with each new set (to register it with the ACM server and KMS).
    """

    def __init__(self, role: str = "app-role", *, ttl: float = 3600.0) -> None:
        super().__init__()
        self.role = role
        self.ttl = ttl
        self.clock_skew = 0.0
        self.token_mode = "optional"
        self.fail_status: int | None = None
        self.code = "Success"
        self.delay = 0.0
        self.body: bytes | None = None  # answer this instead of the JSON (malformed answers)
        self.on_issue: list[Callable[[Issued], None]] = []
        self.issued: list[Issued] = []
        self.requests: list[MetadataRequest] = []
        self._tokens: set[str] = set()
        self._counter = itertools.count(1)

    def now(self) -> float:
        return time.time() + self.clock_skew

    def credential_gets(self) -> list[MetadataRequest]:
        return [r for r in self.requests if r.method == "GET" and r.path.startswith(ROLE_PATH)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(MetadataRequest(request.method, request.path, dict(request.headers)))
        date = {"Date": formatdate(self.now(), usegmt=True)}
        if request.path == TOKEN_PATH and request.method == "PUT":
            ttl = request.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds", "")
            if self.token_mode == "off":
                return web.Response(status=404, headers=date)
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return web.Response(status=400, headers=date)
            new_token = secrets.token_hex(16)
            self._tokens.add(new_token)
            return web.Response(text=new_token, headers=date)
        if request.method != "GET" or not request.path.startswith(ROLE_PATH):
            return web.Response(status=404, headers=date)
        token = request.headers.get("X-aliyun-ecs-metadata-token")
        if token is not None and token not in self._tokens:
            return web.Response(status=401, headers=date)
        if token is None and self.token_mode == "required":
            return web.Response(status=401, headers=date)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, headers=date)
        if request.path[len(ROLE_PATH) :] != self.role:
            return web.Response(status=404, headers=date)
        if self.body is not None:
            return web.Response(body=self.body, headers=date)
        n = next(self._counter)
        expiration = int(self.now() + self.ttl)  # whole seconds, as the real service answers
        issued = Issued(
            f"STS.ak{n}", f"sts-secret-{n}-{secrets.token_hex(8)}", f"sts-token-{n}", expiration
        )
        self.issued.append(issued)
        for callback in self.on_issue:
            callback(issued)
        body = {
            "AccessKeyId": issued.access_key,
            "AccessKeySecret": issued.secret_key,
            "SecurityToken": issued.security_token,
            "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiration)),
            "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now())),
            "Code": self.code,
        }
        return web.json_response(body, headers=date)


# -- KMS ----------------------------------------------------------------------------------


def _rfc3986(text: str) -> str:
    return quote(text, safe="-_.~")


def acs3_signature(
    secret: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    """ACS3-HMAC-SHA256, as Alibaba Cloud's V3 signature documentation defines it."""
    canonical_query = "&".join(
        f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(query, key=lambda kv: kv[0])
    )
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    canonical = "\n".join(
        [
            method,
            path or "/",
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class KMSCall:
    """One request KMS received: its action, caller, query parameters and answer."""

    action: str
    access_key: str
    params: dict[str, str]
    status: int
    signature: str = field(default="", repr=False)


class FakeKMS(_Service):
    """KMS's Encrypt, Decrypt and GenerateDataKey for a set of keys, signature-checked.

    Ciphertext blobs are opaque random handles (never the plaintext). Register callers with
    ``add_credentials``; ``fail_next`` makes the next calls fail like KMS does.
    """

    def __init__(self, key_ids: tuple[str, ...] = ("key-1",)) -> None:
        super().__init__()
        self.key_ids = set(key_ids)
        self.calls: list[KMSCall] = []
        self._credentials: dict[str, tuple[str, str | None]] = {}
        self._blobs: dict[str, tuple[str, str]] = {}  # blob -> (key id, plaintext)
        self._failures: list[tuple[int, str]] = []

    def add_credentials(self, access_key: str, secret: str, token: str | None = None) -> None:
        self._credentials[access_key] = (secret, token)

    def fail_next(
        self, times: int = 1, *, status: int = 503, code: str = "ServiceUnavailable"
    ) -> None:
        self._failures.extend([(status, code)] * times)

    def actions(self) -> list[str]:
        return [c.action for c in self.calls if c.status == 200]

    def plaintext_of(self, blob: str) -> str:
        return self._blobs[blob][1]

    def _error(self, status: int, code: str, message: str) -> web.Response:
        body = {"Code": code, "Message": message, "RequestId": secrets.token_hex(8)}
        return web.json_response(body, status=status)

    def _authenticate(self, request: web.Request, body: bytes) -> str:
        """The caller's access key; raises ``PermissionError(code)`` when it does not check."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("ACS3-HMAC-SHA256 "):
            raise PermissionError("IncompleteSignature")
        parts = dict(p.split("=", 1) for p in auth[len("ACS3-HMAC-SHA256 ") :].split(","))
        access_key = parts.get("Credential", "")
        known = self._credentials.get(access_key)
        if known is None:
            raise PermissionError("InvalidAccessKeyId.NotFound")
        secret, token = known
        if token is not None and request.headers.get("x-acs-security-token") != token:
            raise PermissionError("InvalidSecurityToken.Mismatch")
        payload_hash = hashlib.sha256(body).hexdigest()
        if request.headers.get("x-acs-content-sha256") != payload_hash:
            raise PermissionError("ContentSHA256Mismatch")
        signed = parts.get("SignedHeaders", "").split(";")
        lowered = {k.lower(): v for k, v in request.headers.items()}
        if "host" not in signed or any(name not in lowered for name in signed):
            raise PermissionError("IncompleteSignature")
        expected = acs3_signature(
            secret,
            request.method,
            request.path,
            list(request.query.items()),
            lowered,
            signed,
            payload_hash,
        )
        if not hmac.compare_digest(expected, parts.get("Signature", "")):
            raise PermissionError("SignatureDoesNotMatch")
        return access_key

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        action = request.headers.get("x-acs-action", "")
        params = dict(request.query)
        signature = request.headers.get("Authorization", "").rpartition("Signature=")[2]
        try:
            access_key = self._authenticate(request, body)
        except PermissionError as exc:
            self.calls.append(KMSCall(action, "", params, 400, signature))
            return self._error(400, str(exc), "the request signature does not check")
        if self._failures:
            status, code = self._failures.pop(0)
            self.calls.append(KMSCall(action, access_key, params, status, signature))
            return self._error(status, code, "injected failure")
        response = self._answer(action, params)
        self.calls.append(KMSCall(action, access_key, params, response.status, signature))
        return response

    def _new_blob(self, key_id: str, plaintext: str) -> str:
        blob = base64.b64encode(secrets.token_bytes(24)).decode("ascii")
        self._blobs[blob] = (key_id, plaintext)
        return blob

    def _answer(self, action: str, params: dict[str, str]) -> web.Response:
        request_id: dict[str, Any] = {"RequestId": secrets.token_hex(8)}
        if action in ("Encrypt", "GenerateDataKey"):
            key_id = params.get("KeyId", "")
            if key_id not in self.key_ids:
                return self._error(404, "Forbidden.KeyNotFound", f"key {key_id} not found")
            if action == "Encrypt":
                blob = self._new_blob(key_id, params.get("Plaintext", ""))
                return web.json_response({**request_id, "KeyId": key_id, "CiphertextBlob": blob})
            size = {"AES_128": 16, "AES_256": 32}.get(params.get("KeySpec", "AES_256"))
            if size is None:
                return self._error(400, "InvalidParameter", "bad KeySpec")
            data_key = base64.b64encode(secrets.token_bytes(size)).decode("ascii")
            blob = self._new_blob(key_id, data_key)
            return web.json_response(
                {**request_id, "KeyId": key_id, "Plaintext": data_key, "CiphertextBlob": blob}
            )
        if action == "Decrypt":
            found = self._blobs.get(params.get("CiphertextBlob", ""))
            if found is None:
                return self._error(400, "InvalidCiphertext", "the ciphertext is not valid")
            key_id, plaintext = found
            return web.json_response({**request_id, "KeyId": key_id, "Plaintext": plaintext})
        return self._error(400, "InvalidAction.NotFound", f"no action {action!r}")
