"""Walking a namespace's list pages into ``list_all``'s answer (the same for every protocol)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ACMRequestException

__all__ = ["LIST_ALL_PAGE_SIZE", "walk_pages"]

LIST_ALL_PAGE_SIZE = 200

ItemList = list[dict[str, str]]


def _count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(value)


def page_shape(data: dict[str, Any], page: int) -> tuple[int, int | None, list[Any]]:
    """``pagesAvailable``, ``totalCount`` and ``pageItems`` of one list page.

    Raises:
        ACMRequestException: the page is malformed.
    """
    malformed = ACMRequestException(f"list answered a malformed page {page}")
    try:
        pages, total = (_count(data.get(name)) for name in ("pagesAvailable", "totalCount"))
    except ValueError:
        raise malformed from None
    items = data.get("pageItems")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise malformed
    return pages or 0, total, items


async def walk_pages(
    list_page: Callable[[int, int], Awaitable[dict[str, Any]]],
    group: str | None,
    prefix: str | None,
) -> ItemList:
    """Every item as ``{"dataId", "group"}``, walking pages of ``LIST_ALL_PAGE_SIZE``.

    Args:
        list_page: ``list_page(page, size)``, the client's ``list``.
        group: only items of this group (None: every group).
        prefix: only data ids starting with this (case sensitive).
    """
    result: ItemList = []
    seen: set[tuple[str, str]] = set()
    page, pages, received = 1, 1, 0
    while page <= pages:
        data = await list_page(page, LIST_ALL_PAGE_SIZE)
        pages, total, items = page_shape(data, page)
        received += len(items)
        new = False
        for item in items:
            data_id = item.get("dataId") if isinstance(item, dict) else None
            item_group = item.get("group") if isinstance(item, dict) else None
            if not isinstance(data_id, str) or not isinstance(item_group, str):
                continue
            if (data_id, item_group) in seen:  # items shift between pages as others write
                continue
            seen.add((data_id, item_group))
            new = True
            if group is not None and item_group != group:
                continue
            if prefix is not None and not data_id.startswith(prefix):
                continue
            result.append({"dataId": data_id, "group": item_group})
        # A server that keeps announcing pages but sends nothing new must not keep us here.
        if not new or (total is not None and received >= total):
            break
        page += 1
    return result
