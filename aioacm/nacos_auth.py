"""Nacos username/password login: one token per client, shared, refreshed before it expires.

``POST {ctx}/v3/auth/user/login`` first (Nacos 3.x), ``POST {ctx}/v1/auth/login`` when the
server does not have it (2.x answers 404); the form carries the password, never the URL. The
token (``accessToken``, valid ``tokenTtl`` seconds) goes in ``Authorization: Bearer`` on every
request. It is renewed when ``ttl − window`` has passed (the window is random between ttl/15
and ttl/10, so clients started together do not log in together); concurrent requests share one
login. A request refused with 403 is retried once: with a new login when the server blames the
token (once for all the requests refused together), and otherwise after a new login at most
once a minute: a server that refuses the user does not get a login storm.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from .errors import AccessDeniedError, ClientClosedError, InvalidParameterError
from .keys import check_str
from .wire import Request, Send

__all__ = ["RELOGIN_INTERVAL", "TOKEN_RELOGIN_MIN", "NacosLogin"]

logger = logging.getLogger(__name__)

#: Seconds between two logins forced by a 403 that does not blame the token.
RELOGIN_INTERVAL = 60.0
#: A 403 blaming a token this many seconds old or less does not log in again.
TOKEN_RELOGIN_MIN = 1.0
_V3_LOGIN = "/v3/auth/user/login"
_V1_LOGIN = "/v1/auth/login"
_LOGIN_ANSWERS = frozenset((200, 401, 403, 404, 405, 410, 501))
_DEFAULT_TTL = 18000.0


class NacosLogin:
    """The login of one client.

    Args:
        username: the Nacos user.
        password: its password (kept here only; never logged, never in a repr).
        context_path: the server's context path (``/nacos``).
        timeout: seconds a login may take on one server (a callable: the live option).
        clock: the monotonic clock token ages are measured with.
    """

    def __init__(
        self,
        username: str,
        password: str,
        context_path: str,
        timeout: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.username = check_str(username, "username")
        if not self.username:
            raise InvalidParameterError("username must not be empty")
        self._password = check_str(password, "password")
        self._context_path = context_path
        self._timeout = timeout
        self._clock = clock
        self._send: Send | None = None
        self._token: str | None = None
        self._headers: dict[str, str] = {}
        self._renew_at = -1.0
        self._logged_in_at = -RELOGIN_INTERVAL * 2
        self._lock = asyncio.Lock()
        self._v3 = True  # until the server says it has no v3 login
        #: logins made so far (a read-out for tests and dashboards)
        self.logins = 0

    def __repr__(self) -> str:
        return f"NacosLogin(username={self.username!r})"

    def attach(self, send: Send | None) -> None:
        """The transport's ``send`` logins go through (None: the client closed)."""
        self._send = send
        if send is None:
            self._token, self._headers, self._renew_at = None, {}, -1.0

    async def headers(self, request: Request) -> Mapping[str, str]:
        """The auth header of one attempt (a ``Signer``): logs in first when needed."""
        if self._token is None or self._clock() >= self._renew_at:
            await self._ensure()
        return self._headers

    async def token(self) -> str:
        """The access token (logging in first when needed), for a gRPC request's headers."""
        if self._token is None or self._clock() >= self._renew_at:
            await self._ensure()
        assert self._token is not None
        return self._token

    def refused(self, reason: str = "", sent: Mapping[str, str] | None = None) -> bool:
        """A request was refused with 403 (``reason``: the server's words; ``sent``: the
        headers it carried): whether to send it once more, after a new login or not.

        - The server blames the token ("token expired!", "token invalid!": a restart with a
          new key, a clock jump): if the request carried a token a login has replaced since,
          retry with the new one; else log in again, unless the current token is under
          ``TOKEN_RELOGIN_MIN`` old (a server refusing fresh tokens gets no login loop). So
          however many requests are refused together (thousands of listens on a new
          stream), that is one login.
        - Any other 403 (no permission): log in again at most once every
          ``RELOGIN_INTERVAL`` seconds; within it the 403 stands.
        """
        since = self._clock() - self._logged_in_at
        lowered = reason.lower()
        if "token expired" in lowered or "token invalid" in lowered:
            carried = _token_in(sent)
            if carried is not None and carried != self._token and self._token is not None:
                return True
            if since < TOKEN_RELOGIN_MIN:
                return False
        elif since < RELOGIN_INTERVAL:
            return False
        self._renew_at = -1.0
        return True

    async def _ensure(self) -> None:
        async with self._lock:  # one login for every request waiting for it
            if self._token is not None and self._clock() < self._renew_at:
                return
            await self._login()

    async def _login(self) -> None:
        send = self._send
        if send is None:
            raise ClientClosedError("the client is closed")
        body = urlencode((("username", self.username), ("password", self._password)))
        paths = ((_V3_LOGIN,) if self._v3 else ()) + (_V1_LOGIN,)
        for path in paths:
            request = Request(
                "POST",
                self._context_path + path,
                body=body.encode("ascii"),
                answers=_LOGIN_ANSWERS,
                signed=False,
            )
            resp = await send(request, timeout=self._timeout())
            if resp.status in (404, 405, 410, 501) and path == _V3_LOGIN:
                self._v3 = False  # a 2.x server: v1 from now on
                continue
            if resp.status != 200:
                raise AccessDeniedError(
                    f"Nacos at {resp.server} refused the login of user {self.username!r}"
                    + (
                        " (no such login API: check context_path)"
                        if resp.status in (404, 405, 410, 501)
                        else ": check the username and password"
                    ),
                    status=resp.status,
                    server=resp.server,
                )
            token, ttl = _read_login(resp.body)
            if token is None:
                raise AccessDeniedError(
                    f"Nacos answered the login of user {self.username!r} without a token",
                    status=resp.status,
                    server=resp.server,
                )
            now = self._clock()
            self._token = token
            self._headers = {"Authorization": f"Bearer {token}"}
            self._renew_at = now + ttl - random.uniform(ttl / 15, ttl / 10)
            self._logged_in_at = now
            self.logins += 1
            logger.debug("logged in to %s as %s (token for %g s)", resp.server, self.username, ttl)
            return


def _token_in(headers: Mapping[str, str] | None) -> str | None:
    """The token a request carried: ``accessToken`` (gRPC) or ``Authorization: Bearer``."""
    if not headers:
        return None
    token = headers.get("accessToken")
    if token:
        return token
    bearer = headers.get("Authorization", "")
    return bearer[7:] if bearer.startswith("Bearer ") else None


def _read_login(body: bytes) -> tuple[str | None, float]:
    """``(accessToken, tokenTtl)`` of a login answer (v1, or v3, plain or in ``data``)."""
    try:
        data = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return None, _DEFAULT_TTL
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = data["data"]
    if not isinstance(data, dict):
        return None, _DEFAULT_TTL
    token = data.get("accessToken")
    ttl = data.get("tokenTtl", _DEFAULT_TTL)
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl <= 0:
        ttl = _DEFAULT_TTL
    return (token if isinstance(token, str) and token else None), float(ttl)
