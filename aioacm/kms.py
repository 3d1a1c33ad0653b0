"""KMS encryption of ``cipher-`` items, on the Tea SDK's async API (the ``aioacm[kms]`` extra).

Two schemes, chosen by the data id (PROTOCOL.md section 7):

- ``cipher-kms-aes-128-`` / ``cipher-kms-aes-256-``: envelope encryption as MSE and Nacos do
  it. KMS GenerateDataKey gives a data key (Base64) and its encrypted form; the content is
  stored as Base64(AES-ECB-PKCS#7(data key, UTF-8 content)) and the encrypted data key travels
  beside it (form field ``encryptedDataKey``, response header ``Encrypted-Data-Key``). Reading
  asks KMS to Decrypt the data key, then decrypts locally.
- any other ``cipher-`` id: KMS Encrypt of the content text; the stored content is KMS's
  ``CiphertextBlob`` and reading is a KMS Decrypt of it, as the sync SDK does.

md5s and polling always use the stored ciphertext; only the user sees plaintext. The SDK and
``cryptography`` are imported on first use, so aioacm imports fast without them, and in a
worker thread (``import_module``): importing the Tea SDK takes about a second, which would
stall every other task of the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .auth import ClientCredentials, Credentials
from .errors import InvalidOptionError, KMSError
from .options import Options

__all__ = [
    "CIPHER_PREFIX",
    "KMS",
    "SDK_MODULES",
    "envelope_key_spec",
    "import_module",
    "is_cipher",
    "kms_available",
]

logger = logging.getLogger(__name__)

CIPHER_PREFIX = "cipher-"
_ENVELOPE_PREFIXES = {"cipher-kms-aes-128-": "AES_128", "cipher-kms-aes-256-": "AES_256"}
_ENVELOPE_STEM = "cipher-kms-aes-"
_KEY_BYTES = {"AES_128": 16, "AES_256": 32}
_EXTRA_HINT = "install the KMS extra: pip install 'aioacm[kms]'"
#: the modules KMS works with, imported off the event loop on a client's first KMS use
SDK_MODULES = (
    "alibabacloud_kms20160120.client",
    "alibabacloud_kms20160120.models",
    "alibabacloud_tea_openapi.models",
    "darabonba.runtime",
    "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.padding",
)
#: What imports each of ``SDK_MODULES``; it is called in a worker thread, never on the event
#: loop (a test may replace it, to see that).
import_module: Callable[[str], ModuleType] = importlib.import_module


def _import_sdk() -> dict[str, ModuleType]:
    """Every module of ``SDK_MODULES`` (in a worker thread: the first import takes ~1 s)."""
    return {name: import_module(name) for name in SDK_MODULES}


def is_cipher(data_id: str) -> bool:
    """Whether the item is stored encrypted when KMS is on."""
    return data_id.startswith(CIPHER_PREFIX)


def envelope_key_spec(data_id: str) -> str | None:
    """``AES_128``/``AES_256`` for envelope-encrypted ids, None for the others."""
    if not data_id.startswith(_ENVELOPE_STEM):  # one test for nearly every id (every get)
        return None
    for prefix, spec in _ENVELOPE_PREFIXES.items():
        if data_id.startswith(prefix):
            return spec
    return None


def kms_available() -> bool:
    """Whether the ``aioacm[kms]`` extra is installed (checked without importing it)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("alibabacloud_kms20160120", "alibabacloud_tea_openapi", "cryptography")
    )


def _aes_ecb(sdk: dict[str, ModuleType], key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    # ECB is what Nacos/MSE interoperability requires; each item has its own data key.
    ciphers = sdk["cryptography.hazmat.primitives.ciphers"]
    padding = sdk["cryptography.hazmat.primitives.padding"]
    cipher = ciphers.Cipher(ciphers.algorithms.AES(key), ciphers.modes.ECB())
    if encrypt:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = cipher.encryptor()
        sealed: bytes = encryptor.update(padded) + encryptor.finalize()
        return sealed
    decryptor = cipher.decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    plain: bytes = unpadder.update(padded) + unpadder.finalize()
    return plain


@dataclass(frozen=True)
class _ClientKey:
    access_key: str
    secret_key: str
    security_token: str | None
    region_id: str
    endpoint: str | None
    protocol: str


class KMS:
    """Encrypts and decrypts ``cipher-`` items for one client.

    Args:
        options: the client's live options (``region_id``, ``key_id``, ``kms_ak``,
            ``kms_secret``, ``kms_endpoint``, ``kms_protocol``, ``default_timeout``).
        credentials: the client's credentials (ak/sk or RAM role), used when ``kms_ak`` and
            ``kms_secret`` are not set.
    """

    def __init__(self, options: Options, credentials: ClientCredentials) -> None:
        self.options = options
        self.credentials = credentials
        self._client: Any = None
        self._client_key: _ClientKey | None = None
        self._sdk: dict[str, ModuleType] | None = None
        self._importing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"KMS(region_id={self.options.region_id!r}, endpoint={self._endpoint()!r})"

    def _endpoint(self) -> str:
        return self.options.kms_endpoint or f"kms.{self.options.region_id}.aliyuncs.com"

    def check(self, *, encrypting: bool) -> None:
        """Refuse a configuration KMS cannot work with, before any I/O.

        Raises:
            InvalidOptionError: the extra is missing, or region/key/credentials are not set.
        """
        if not kms_available():
            raise InvalidOptionError(f"kms_enabled=True needs the KMS SDK: {_EXTRA_HINT}")
        if not self.options.region_id and not self.options.kms_endpoint:
            raise InvalidOptionError("kms_enabled=True needs region_id (or kms_endpoint)")
        if encrypting and not self.options.key_id:
            raise InvalidOptionError("publishing a cipher- item needs the key_id option")
        has_own = bool(self.options.kms_ak and self.options.kms_secret)
        if not has_own and not self.credentials.configured:
            raise InvalidOptionError(
                "kms_enabled=True needs kms_ak/kms_secret, the client's ak/sk or a RAM role"
            )

    async def _modules(self) -> dict[str, ModuleType]:
        """The SDK's modules, imported once, in a worker thread (the loop keeps running)."""
        if self._sdk is None:
            async with self._importing:
                if self._sdk is None:
                    self._sdk = await asyncio.to_thread(_import_sdk)
        return self._sdk

    async def _credentials(self) -> Credentials:
        if self.options.kms_ak and self.options.kms_secret:
            return Credentials(self.options.kms_ak, self.options.kms_secret)
        return await self.credentials.get_credentials()

    async def _tea_client(self) -> Any:
        credentials = await self._credentials()
        wanted = _ClientKey(
            credentials.access_key,
            credentials.secret_key,
            credentials.security_token,
            self.options.region_id,
            self.options.kms_endpoint,
            self.options.kms_protocol,
        )
        if self._client is None or wanted != self._client_key:
            sdk = await self._modules()
            self._client = sdk["alibabacloud_kms20160120.client"].Client(
                sdk["alibabacloud_tea_openapi.models"].Config(
                    access_key_id=wanted.access_key,
                    access_key_secret=wanted.secret_key,
                    security_token=wanted.security_token,
                    region_id=wanted.region_id or None,
                    endpoint=wanted.endpoint,
                    protocol=wanted.protocol,
                )
            )
            self._client_key = wanted
        return self._client

    def _runtime(self, sdk: dict[str, ModuleType]) -> Any:
        millis = int(self.options.default_timeout * 1000)
        # TLS verification stays on: ignore_ssl is never set.
        return sdk["darabonba.runtime"].RuntimeOptions(
            read_timeout=millis, connect_timeout=millis, autoretry=False
        )

    async def _call(self, action: str, key: str, method: str, request: Any) -> Any:
        """One KMS call; every failure becomes a KMSError that carries no secret."""
        client = await self._tea_client()
        runtime = self._runtime(await self._modules())
        try:
            response = await getattr(client, method)(request, runtime)
        except Exception as exc:  # the Tea SDK's errors have no common base: this is the boundary
            code = getattr(exc, "code", None)
            status = getattr(exc, "statusCode", None)
            detail = getattr(exc, "message", None) if code else None
            reason = f"{code}: {detail}" if code else type(exc).__name__
            logger.debug("KMS %s for %s failed: %s", action, key, reason)
            # Not chained: Tea exceptions keep the signed request (token, signature) around.
            raise KMSError(
                f"KMS {action} failed: {reason}",
                code=code if isinstance(code, str) else None,
                status=status if isinstance(status, int) else None,
                server=self._endpoint(),
                key=key,
            ) from None
        body = getattr(response, "body", None)
        if body is None:
            raise KMSError(f"KMS {action} answered no body", server=self._endpoint(), key=key)
        return body

    async def encrypt(self, data_id: str, key: str, content: str) -> tuple[str, str | None]:
        """Encrypt ``content`` for storage: ``(stored content, encrypted data key or None)``.

        Raises:
            InvalidOptionError: see ``check``.
            KMSError: KMS failed.
        """
        self.check(encrypting=True)
        sdk = await self._modules()
        models = sdk["alibabacloud_kms20160120.models"]
        spec = envelope_key_spec(data_id)
        if spec is None:
            body = await self._call(
                "Encrypt",
                key,
                "encrypt_with_options_async",
                models.EncryptRequest(key_id=self.options.key_id, plaintext=content),
            )
            blob = body.ciphertext_blob
            if not isinstance(blob, str) or not blob:
                raise KMSError("KMS Encrypt answered no CiphertextBlob", key=key)
            return blob, None
        body = await self._call(
            "GenerateDataKey",
            key,
            "generate_data_key_with_options_async",
            models.GenerateDataKeyRequest(key_id=self.options.key_id, key_spec=spec),
        )
        data_key = self._data_key(body.plaintext, spec, key)
        encrypted_key = body.ciphertext_blob
        if not isinstance(encrypted_key, str) or not encrypted_key:
            raise KMSError("KMS GenerateDataKey answered no CiphertextBlob", key=key)
        sealed = _aes_ecb(sdk, data_key, content.encode("utf-8"), encrypt=True)
        return base64.b64encode(sealed).decode("ascii"), encrypted_key

    async def decrypt(self, data_id: str, key: str, stored: str, encrypted_key: str | None) -> str:
        """The plaintext of a stored ``cipher-`` item.

        Raises:
            InvalidOptionError: see ``check``.
            KMSError: KMS failed, the encrypted data key is missing, or the data is corrupt.
        """
        self.check(encrypting=False)
        spec = envelope_key_spec(data_id)
        if spec is None:
            plaintext = await self._kms_decrypt(key, stored)
            if not isinstance(plaintext, str):
                raise KMSError("KMS Decrypt answered no Plaintext", key=key)
            return plaintext
        if not encrypted_key:
            raise KMSError("the item has no encrypted data key to decrypt it with", key=key)
        data_key = self._data_key(await self._kms_decrypt(key, encrypted_key), spec, key)
        try:
            sealed = base64.b64decode(stored, validate=True)
            sdk = await self._modules()
            return _aes_ecb(sdk, data_key, sealed, encrypt=False).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            # wrong key, truncated or altered content: never hand back garbage as plaintext
            raise KMSError(
                f"the content cannot be decrypted with its data key ({type(exc).__name__})",
                key=key,
            ) from None

    async def _kms_decrypt(self, key: str, blob: str) -> object:
        """KMS Decrypt of one ciphertext blob: its ``Plaintext`` (unchecked)."""
        models = (await self._modules())["alibabacloud_kms20160120.models"]
        body = await self._call(
            "Decrypt",
            key,
            "decrypt_with_options_async",
            models.DecryptRequest(ciphertext_blob=blob),
        )
        return body.plaintext

    @staticmethod
    def _data_key(plaintext: object, spec: str, key: str) -> bytes:
        try:
            data_key = base64.b64decode(str(plaintext), validate=True)
        except (binascii.Error, ValueError):
            data_key = b""
        if len(data_key) != _KEY_BYTES[spec]:
            raise KMSError(f"KMS answered a data key that is not {spec}", key=key)
        return data_key
