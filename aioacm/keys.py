"""Config keys: a checked ``(data id, group, namespace)`` and the file name it is stored under.

What a protocol accepts in a data id or a group is the dialect's to say (``Dialect.check_key``);
this module holds what every protocol shares: the default group, the namespace check (a
namespace ends up in file names, so it must be safe there whatever the server accepts), the
``{dataId}+{group}+{namespace}`` file names of the sync SDK, and the memo of checked keys that
spares every ``get`` the checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import InvalidParameterError
from .kms import envelope_key_spec, is_cipher

__all__ = [
    "DEFAULT_GROUP",
    "MAX_NAMESPACE_LENGTH",
    "Item",
    "KeyMemo",
    "cache_key",
    "check_str",
    "checked_data_id",
    "checked_group",
    "content_text",
    "parse_cache_key",
    "validate_namespace",
]

DEFAULT_GROUP = "DEFAULT_GROUP"
MAX_NAMESPACE_LENGTH = 128

# The namespace ends up in a file name, so it gets no ``/`` and no ``..`` either.
_NAMESPACE = re.compile(r"[A-Za-z0-9._:-]+")


def check_str(value: object, what: str) -> str:
    """``value`` if it is a str, else InvalidParameterError naming ``what``."""
    if not isinstance(value, str):
        raise InvalidParameterError(f"{what} must be a str, not {type(value).__name__}")
    return value


#: A dialect's rule for one key part: ``(value, what, limit) -> value``, or InvalidParameterError.
PartCheck = Callable[[str, str, int], str]


def checked_data_id(data_id: object, check: PartCheck, limit: int) -> str:
    """A non-empty str data id that passes the dialect's ``check``."""
    value = check_str(data_id, "data_id")
    if not value:
        raise InvalidParameterError("Invalid dataId: it must not be empty")
    return check(value, "dataId", limit)


def checked_group(group: object, check: PartCheck, limit: int) -> str:
    """``DEFAULT_GROUP`` for None or blank, else the stripped group, passing ``check``."""
    if group is None:
        return DEFAULT_GROUP
    value = check_str(group, "group").strip()
    if not value:
        return DEFAULT_GROUP
    return check(value, "group", limit)


def content_text(content: object) -> str:
    """The content to publish as text: None is refused, bytes are taken as UTF-8."""
    if content is None:
        raise InvalidParameterError("Can not publish None content, use remove instead")
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameterError("content bytes must be UTF-8 text") from exc
    return check_str(content, "content")


def validate_namespace(namespace: object) -> str:
    """Return the namespace (tenant) id, ``""`` for None; refuse anything unsafe in a file name."""
    if namespace is None:
        return ""
    value = check_str(namespace, "namespace")
    if not value:
        return ""
    if len(value) > MAX_NAMESPACE_LENGTH:
        raise InvalidParameterError(
            f"Invalid namespace: longer than {MAX_NAMESPACE_LENGTH} characters ({len(value)})"
        )
    if not _NAMESPACE.fullmatch(value) or ".." in value:
        raise InvalidParameterError(
            f"Invalid namespace {value!r}: only ASCII letters, digits and . : - _ are allowed,"
            " and no '..'"
        )
    return value


def cache_key(data_id: str, group: str, namespace: str) -> str:
    """The local file name and watch key: ``dataId+group+namespace`` (the sync SDK's layout)."""
    return f"{data_id}+{group}+{namespace}"


def parse_cache_key(key: str) -> tuple[str, str, str]:
    """Split a cache key back into ``(data_id, group, namespace)``."""
    data_id, group, namespace = key.split("+", 2)
    return data_id, group, namespace


class Item(NamedTuple):
    """One config item, checked, with what reading it sends (made once per key).

    Attributes:
        data_id: the data id.
        group: the group (``DEFAULT_GROUP`` for None or blank).
        namespace: the namespace id ("" for the default one).
        key: the cache key: the file name in the stores, and the watch key.
        envelope: envelope-encrypted (``cipher-kms-aes-*``): it has an encrypted data key.
        cipher: stored encrypted when KMS is on (``cipher-*``).
        query: the request that reads it, as its dialect built it (opaque here); None for an
            item made with ``remember=False`` (the lookup chain builds it when needed).
    """

    data_id: str
    group: str
    namespace: str
    key: str
    envelope: bool
    cipher: bool
    query: Any


# (data_id, group) -> (data_id, group) checked and normalized
KeyCheck = Callable[[object, object], tuple[str, str]]


class KeyMemo:
    """Checks keys into ``Item``s and remembers the ones read again and again.

    Args:
        namespace: the client's namespace.
        check: the dialect's key check (raises InvalidParameterError).
        query: builds the request that reads an item (the dialect's).
        size: distinct ``(data_id, group)`` pairs remembered (about 600 bytes each); past it
            the memory starts over.
    """

    def __init__(
        self, namespace: str, check: KeyCheck, query: Callable[[Item], Any], size: int = 1024
    ) -> None:
        self.namespace = namespace
        self.size = size
        self._check = check
        self._query = query
        self._items: dict[tuple[object, object], Item] = {}

    def __len__(self) -> int:
        """How many pairs are remembered."""
        return len(self._items)

    def item(self, data_id: object, group: object, remember: bool = True) -> Item:
        """The item ``(data_id, group)`` names, checked and normalized; InvalidParameterError.

        ``remember``: keep it for the next call (gets); watchers, which may cover tens of
        thousands of keys each fetched now and then, pass False. Only ``str`` arguments are
        remembered: anything else is checked (and refused) every time.
        """
        try:
            return self._items[data_id, group]  # every get: the checks ran once per key
        except (KeyError, TypeError):
            pass
        checked_id, checked_group = self._check(data_id, group)
        item = Item(
            checked_id,
            checked_group,
            self.namespace,
            cache_key(checked_id, checked_group, self.namespace),
            envelope_key_spec(checked_id) is not None,
            is_cipher(checked_id),
            None,
        )
        if not remember:
            return item  # read rarely if at all (a watched key): its request is made on use
        item = item._replace(query=self._query(item))
        if type(data_id) is str and (group is None or type(group) is str):
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[data_id, group] = item
        return item
