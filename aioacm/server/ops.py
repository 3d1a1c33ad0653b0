"""The operations the bundled server tells apart, and how a request is named one of them.

Shared by the request records and the fault injector, which both name operations.
"""

from __future__ import annotations

__all__ = ["OPS", "PREFIX", "classify"]

PREFIX = "/diamond-server"


#: Every operation name a request can be logged (and faulted) under.
OPS = ("address", "get", "publish", "remove", "list", "poll", "other")


def classify(method: str, path: str, action: str | None) -> str:
    """Name the ACM operation a request is, from its HTTP method, path and ``method`` query.

    Args:
        method: the HTTP method (``GET``, ``POST``...).
        path: the request path.
        action: the ``method`` query parameter, if any (``syncUpdateAll``...).

    Returns:
        One of :data:`OPS`; ``"other"`` for anything the server does not serve.
    """
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
