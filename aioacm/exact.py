"""Items exactly as a server stores them: ``ConfigItem``, and the two coroutines of
``ConfigClient`` that read and write one without the lookup chain or KMS (``get_item``,
``publish_raw``). Moving a namespace from one server to another (``aioacm copy``) needs both:
the ciphertext, encrypted data key and config type must arrive unchanged.

``ExactAccess`` is a part of ``ConfigClient`` kept in its own room; it uses the client's key
memo, dialect and transport and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .errors import InvalidParameterError

if TYPE_CHECKING:
    from .dialects import Dialect
    from .keys import KeyMemo
    from .transport import ClientTransport

__all__ = ["ConfigItem", "ExactAccess"]


@dataclass(frozen=True)
class ConfigItem:
    """One config item exactly as a server stores it (``ConfigClient.get_item``): never
    decrypted, with what the server keeps beside the content.

    Attributes:
        data_id: the data id.
        group: the group.
        namespace: the namespace id ("" for the default one).
        content: the content as stored (still encrypted for ``cipher-`` items).
        md5: the md5 of ``content`` as the protocol computes it (ACM: over GBK; Nacos: over
            UTF-8): compare it only with md5s of the same protocol.
        config_type: the config type the server keeps (Nacos: ``text``, ``yaml``...); None
            where it keeps none (ACM) or did not say.
        encrypted_data_key: the encrypted data key of an envelope-encrypted item
            (``cipher-kms-aes-128-``/``-256-``); None for every other item.
    """

    data_id: str
    group: str
    namespace: str
    content: str
    md5: str
    config_type: str | None = None
    encrypted_data_key: str | None = None

    def __repr__(self) -> str:  # never the content or the data key: reprs end up in logs
        return (
            f"ConfigItem({self.data_id!r}, {self.group!r}, {self.namespace!r},"
            f" md5={self.md5}, config_type={self.config_type!r})"
        )


class _Opened(Protocol):
    """What ``ConfigClient._open()`` gives: the open client's transport."""

    @property
    def transport(self) -> ClientTransport: ...


class ExactAccess:
    """``get_item`` and ``publish_raw`` (a base class of ``ConfigClient``)."""

    _dialect: Dialect
    _memo: KeyMemo

    if TYPE_CHECKING:  # ConfigClient's

        def _timeout(self, timeout: object) -> float: ...

        def _open(self) -> _Opened: ...

    async def get_item(
        self, data_id: str, group: str | None, timeout: float | None = None
    ) -> ConfigItem | None:
        """One config item exactly as the server stores it, with its config type and
        encrypted data key.

        Straight from the server: no failover file is read and no snapshot is read or written,
        whatever the options say; never decrypted, even with ``kms_enabled``.

        Args:
            data_id: the data id.
            group: the group; None or "" means ``DEFAULT_GROUP``.
            timeout: seconds for one server (default: ``default_timeout``).

        Returns:
            The item, or None when it does not exist.

        Raises:
            InvalidParameterError: a bad argument (before any I/O).
            AccessDeniedError: 403.
            ServerUnavailableError: every server failed.
        """
        item = self._memo.item(data_id, group, remember=False)
        seconds = self._timeout(timeout)
        dialect = self._dialect
        resp = await self._open().transport.send(dialect.query(item), timeout=seconds, key=item.key)
        fetched = dialect.read_query(resp, item)
        if fetched is None:
            return None
        return ConfigItem(
            item.data_id,
            item.group,
            item.namespace,
            fetched.content,
            dialect.content_md5(fetched.content),
            fetched.config_type,
            fetched.data_key,
        )

    async def publish_raw(
        self,
        data_id: str,
        group: str | None,
        content: str,
        *,
        encrypted_data_key: str | None = None,
        config_type: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Create or replace one config item with ``content`` exactly as given: the
        counterpart of ``get_raw`` and ``get_item``. Never encrypts, even with
        ``kms_enabled`` (a ``cipher-`` item's content is taken to be ciphertext already).

        Args:
            data_id: the data id.
            group: the group; None or "" means ``DEFAULT_GROUP``.
            content: the content to store.
            encrypted_data_key: the encrypted data key of an envelope-encrypted item, stored
                beside the content (ACM and Nacos both keep it).
            config_type: the config type to keep with the item (``yaml``, ``json``...), sent
                as given: Nacos keeps it (and stores a type it does not know as ``text``);
                ACM keeps none, so ``ACMClient`` ignores it.
            timeout: seconds for one server (default: ``default_timeout``).

        Returns:
            True.

        Raises:
            InvalidParameterError: a bad argument, or content the server cannot store (ACM:
                outside GBK or over 100 KB; Nacos: blank), before any I/O.
            AccessDeniedError: 403.
            ServerUnavailableError: every server failed.
        """
        item = self._memo.item(data_id, group, remember=False)
        seconds = self._timeout(timeout)
        extras = (("encrypted_data_key", encrypted_data_key), ("config_type", config_type))
        for name, value in extras:
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidParameterError(f"{name} must be a non-blank str or None: {value!r}")
        dialect = self._dialect
        text = dialect.check_content(content)
        request = dialect.publish(item, text, data_key=encrypted_data_key, config_type=config_type)
        resp = await self._open().transport.send(request, timeout=seconds, key=item.key)
        dialect.read_ack(resp, item)
        return True
