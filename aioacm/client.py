"""``ACMClient``: the public client for Alibaba Cloud ACM.

Its own arguments are checked here; everything a client does is ``ConfigClient``'s
(``aioacm.base``), spoken in ACM's dialect (``aioacm.dialects.acm``).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from .auth import CredentialsProvider, StaticCredentialsProvider
from .base import ConfigClient, WatchCallback
from .dialects.acm import AcmDialect, validate_data_id
from .errors import InvalidParameterError
from .keys import validate_namespace

__all__ = ["ACMClient", "WatchCallback"]


def _check_endpoint(endpoint: object) -> str:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise InvalidParameterError("endpoint must be a non-empty 'host[:port]' string")
    endpoint = endpoint.strip()
    if "://" in endpoint or "/" in endpoint or any(c.isspace() for c in endpoint):
        raise InvalidParameterError(
            f"endpoint must be 'host[:port]' without scheme or path, not {endpoint!r}"
        )
    return endpoint


def _check_secret_pair(ak: object, sk: object) -> tuple[str, str] | None:
    if ak is None and sk is None:
        return None
    if not isinstance(ak, str) or not ak or not isinstance(sk, str) or not sk:
        raise InvalidParameterError("ak and sk must be given together, as non-empty strings")
    return ak, sk


class ACMClient(ConfigClient):
    """An asyncio client for one ACM namespace.

    Use it as ``async with ACMClient(...) as client:``, or call ``await client.aclose()`` when
    done; it opens lazily on first use. Nothing is created in ``__init__``: no session, no task,
    no file.

    Args:
        endpoint: the ACM endpoint, ``host[:port]`` (the address server, or with
            ``cai_enabled=False`` the server itself).
        namespace: the namespace (tenant) id; None or "" for the default namespace.
        ak: AccessKey; signs requests together with ``sk``.
        sk: SecretKey.
        ram_role_name: sign with the temporary credentials of this ECS RAM role, fetched from
            the instance metadata service (``ram_metadata_url``); wins over ak/sk, as in the
            sync SDK.
        unit_name: the address-server unit, if any.
        credentials: any ``CredentialsProvider`` (instead of ak/sk).
        session: an ``aiohttp.ClientSession`` to use; the client never closes one it was given.
        **options: any option of ``set_options``.

    Raises:
        InvalidParameterError: a bad endpoint, namespace or credential pair.
        InvalidOptionError: an unknown option or a bad value.
    """

    def __init__(
        self,
        endpoint: str,
        namespace: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        ram_role_name: str | None = None,
        unit_name: str | None = None,
        *,
        credentials: CredentialsProvider | None = None,
        session: aiohttp.ClientSession | None = None,
        **options: Any,
    ) -> None:
        self._endpoint = checked_endpoint = _check_endpoint(endpoint)
        checked_namespace = validate_namespace(namespace)
        unit = validate_data_id(unit_name) if unit_name is not None and unit_name != "" else None
        pair = _check_secret_pair(ak, sk)
        if pair is not None and credentials is not None:
            raise InvalidParameterError("give either ak/sk or credentials, not both")
        self._ak = pair[0] if pair else None
        if ram_role_name is not None:
            options = {**options, "ram_role_name": ram_role_name}
        self._setup(
            checked_namespace,
            StaticCredentialsProvider(*pair) if pair else credentials,
            session,
            options,
            lambda opts, creds: AcmDialect(checked_endpoint, unit, checked_namespace, opts, creds),
            role_allowed=credentials is None,
        )

    @property
    def endpoint(self) -> str:
        """The endpoint given to the client."""
        return self._endpoint

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self.session is not None else "new"
        return (
            f"ACMClient(endpoint={self._endpoint!r}, namespace={self.namespace!r},"
            f" ak={self._ak!r}, {state})"
        )

    async def publish(
        self, data_id: str, group: str | None, content: str, timeout: float | None = None
    ) -> bool:
        """Create or replace one config item.

        With ``kms_enabled``, a ``cipher-`` item is encrypted first (see the README's KMS
        section); only ciphertext reaches the server.

        Returns:
            True.

        Raises:
            InvalidParameterError: a bad argument, None content, or content ACM cannot store
                (outside GBK, or over 100 KB), before any I/O.
            InvalidOptionError: a ``cipher-`` item with KMS on but not configured (before I/O).
            AccessDeniedError: 403.
            ServerUnavailableError: every server failed.
            KMSError: KMS could not encrypt the content; nothing was sent.
        """
        return await self._publish(data_id, group, content, timeout)
