"""The operations the bundled server tells apart, and how a request is named one of them.

Shared by the request records and the fault injector, which both name operations.
"""

from __future__ import annotations

__all__ = ["NACOS_PREFIX", "OPS", "PREFIX", "classify"]

PREFIX = "/diamond-server"
NACOS_PREFIX = "/nacos"

#: Every operation name a request can be logged (and faulted) under; ACM's and Nacos's
#: requests share them (a fault on "get" hits both APIs).
OPS = ("address", "get", "publish", "remove", "list", "poll", "login", "health", "other")

_NACOS_GETS = {"/v1/cs/configs": "get", "/v3/client/cs/config": "get", "/serverlist": "address"}
_NACOS_HEALTH = ("/v1/console/health/readiness", "/v3/admin/core/state/readiness")
_NACOS_LOGINS = ("/v1/auth/login", "/v1/auth/users/login", "/v3/auth/user/login")


def classify(method: str, path: str, action: str | None, search: bool = False) -> str:
    """Name the operation a request is, from its HTTP method, path and query.

    Args:
        method: the HTTP method (``GET``, ``POST``...).
        path: the request path.
        action: ACM's ``method`` query parameter, if any (``syncUpdateAll``...).
        search: whether the query has Nacos's ``search`` parameter (a list).

    Returns:
        One of :data:`OPS`; ``"other"`` for anything the server does not serve.
    """
    if path.startswith(NACOS_PREFIX + "/"):
        return _classify_nacos(method, path[len(NACOS_PREFIX) :], search)
    if not path.startswith(PREFIX + "/"):
        return "other"
    name = path[len(PREFIX) + 1 :]
    if method == "GET":
        if name == "diamond" or (name.startswith("diamond-unit-") and len(name) > 13):
            return "address"
        if name == "config.co":
            return "get"
        if name == "basestone.do" and action == "getAllConfigByTenant":
            return "list"
    elif method == "POST":
        if name == "config.co" and action is None:
            return "poll"
        if name == "basestone.do" and action == "syncUpdateAll":
            return "publish"
        if name == "datum.do" and action == "deleteAllDatums":
            return "remove"
    return "other"


def _classify_nacos(method: str, name: str, search: bool) -> str:
    if name in _NACOS_LOGINS:
        return "login" if method == "POST" else "other"
    if name in _NACOS_HEALTH:
        return "health" if method == "GET" else "other"
    if name == "/v1/cs/configs":
        if method == "GET":
            return "list" if search else "get"
        if method == "POST":
            return "publish"
        if method == "DELETE":
            return "remove"
        return "other"
    if name == "/v1/cs/configs/listener":
        return "poll" if method == "POST" else "other"
    if method == "GET":
        return _NACOS_GETS.get(name, "other")
    return "other"
