"""Client options: one table of names, types, defaults and checks.

The names are the sync SDK's, so ``set_options(**same_kwargs)`` keeps working; the few options
it did not have are marked *aioacm* below. Unlike the sync SDK, an unknown name or a value of the
wrong type is an error (``InvalidOptionError``), never a logged warning.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import InvalidOptionError

__all__ = ["OPTION_NAMES", "Options"]


def _number(lo: float, hi: float) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidOptionError(f"option {name} must be a number, not {type(value).__name__}")
        if not lo < value <= hi:
            raise InvalidOptionError(f"option {name} must be > {lo} and <= {hi}, not {value}")
        return float(value)

    return check


def _integer(lo: int, hi: int) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidOptionError(f"option {name} must be an int, not {type(value).__name__}")
        if not lo <= value <= hi:
            raise InvalidOptionError(f"option {name} must be from {lo} to {hi}, not {value}")
        return value

    return check


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"option {name} must be True or False, not {value!r}")
    return value


def _optional_boolean(name: str, value: Any) -> bool | None:
    return None if value is None else _boolean(name, value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidOptionError(f"option {name} must be a str, not {type(value).__name__}")
    return value


def _text_or_none(name: str, value: Any) -> str:
    # the sync SDK's settings files store null for an unset region or key id
    return "" if value is None else _text(name, value)


def _optional_text(name: str, value: Any) -> str | None:
    return None if value is None or value == "" else _text(name, value)


def _path(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidOptionError(f"option {name} must be a path, not {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text:
        raise InvalidOptionError(f"option {name} must be a non-empty path")
    return text


def _optional_path(name: str, value: Any) -> str | None:
    return None if value is None else _path(name, value)


def _header_text(name: str, value: Any) -> str:
    text = _text(name, value)
    if not text or not text.isprintable() or not text.isascii():
        raise InvalidOptionError(f"option {name} must be non-empty printable ASCII")
    return text


_ROLE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HOST_PORT = re.compile(r"[A-Za-z0-9._-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_URL = re.compile(r"https?://[A-Za-z0-9._\[\]:-]+(/[A-Za-z0-9._~/-]*)?")


def _role_name(name: str, value: Any) -> str | None:
    text = _optional_text(name, value)
    if text is not None and (not _ROLE_NAME.fullmatch(text) or not text.strip(".")):
        # the role name becomes part of the metadata URL: refuse anything path-like
        raise InvalidOptionError(
            f"option {name} must be 1-64 ASCII letters, digits, '.', '_' or '-', not {text!r}"
        )
    return text


def _metadata_url(name: str, value: Any) -> str:
    text = _text(name, value)
    if not _URL.fullmatch(text):
        raise InvalidOptionError(
            f"option {name} must be an http(s) URL without query or fragment, not {text!r}"
        )
    return text.rstrip("/")


def _host_port(name: str, value: Any) -> str | None:
    text = _optional_text(name, value)
    if text is not None and not _HOST_PORT.fullmatch(text):
        raise InvalidOptionError(f"option {name} must be 'host[:port]', not {text!r}")
    return text


def _kms_protocol(name: str, value: Any) -> str:
    text = _text(name, value).lower()
    if text not in ("https", "http"):
        raise InvalidOptionError(f"option {name} must be 'https' or 'http', not {value!r}")
    return text


# name -> check; the defaults live on the dataclass below.
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "default_timeout": _number(0, 3600),
    "tls_enabled": _boolean,
    "auth_enabled": _optional_boolean,
    "cai_enabled": _boolean,
    "pulling_timeout": _number(0, 3600),
    "pulling_config_size": _integer(1, 10000),
    "callback_thread_num": _integer(1, 1024),
    "failover_base": _path,
    "snapshot_base": _path,
    "app_name": _header_text,
    "kms_enabled": _boolean,
    "region_id": _text_or_none,
    "kms_ak": _optional_text,
    "kms_secret": _optional_text,
    "key_id": _text_or_none,
    "no_snapshot": _boolean,
    "ram_role_name": _role_name,
    # aioacm additions
    "address_refresh_interval": _number(0, 86400),
    "tls_ca_file": _optional_path,
    "ram_metadata_url": _metadata_url,
    "kms_endpoint": _host_port,
    "kms_protocol": _kms_protocol,
}

_SECRET_OPTIONS = frozenset({"kms_secret"})


def _unknown(names: list[str]) -> str:
    """The message for unknown option names: the nearest known name of each (``unknown option
    'pulling_timeot'; did you mean 'pulling_timeout'?``), else every known name."""
    parts, guessed = [], True
    for name in names:
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        if close:
            parts.append(f"unknown option {name!r}; did you mean {close[0]!r}?")
        else:
            parts.append(f"unknown option {name!r}")
            guessed = False
    message = " ".join(parts)
    return message if guessed else f"{message} (known: {', '.join(OPTION_NAMES)})"


@dataclass
class Options:
    """Every option with its default.

    Attributes:
        default_timeout: seconds for one request to one server (sync default 3).
        tls_enabled: talk HTTPS to the data servers (certificates are always verified).
        auth_enabled: sign requests; None means "when credentials were given".
        cai_enabled: ask the address server for the server list (else the endpoint is the server).
        pulling_timeout: seconds the server may hold a long poll.
        pulling_config_size: most keys one poller watches.
        callback_thread_num: most watcher callbacks running at once.
        failover_base: folder of hand-maintained failover files.
        snapshot_base: folder of snapshots written after each server read.
        app_name: sent as ``Diamond-Client-AppName``.
        kms_enabled: decrypt/encrypt ``cipher-`` items with KMS.
        region_id: KMS region.
        kms_ak: KMS access key (default: the client's).
        kms_secret: KMS secret key (default: the client's); never shown in repr.
        key_id: KMS key id used to encrypt.
        no_snapshot: default for ``get(no_snapshot=...)``.
        ram_role_name: take credentials from this ECS RAM role (wins over ak/sk, as in the
            sync SDK).
        address_refresh_interval: *aioacm*: seconds between address-server refreshes (30).
        tls_ca_file: *aioacm*: a CA bundle to verify the servers with, instead of the system's.
        ram_metadata_url: *aioacm*: the ECS metadata service the RAM role's credentials come
            from.
        kms_endpoint: *aioacm*: KMS ``host[:port]`` (default: ``kms.<region_id>.aliyuncs.com``).
        kms_protocol: *aioacm*: ``https`` (default; certificates are always verified) or
            ``http`` (a local test KMS).
    """

    default_timeout: float = 3.0
    tls_enabled: bool = False
    auth_enabled: bool | None = None
    cai_enabled: bool = True
    pulling_timeout: float = 30.0
    pulling_config_size: int = 3000
    callback_thread_num: int = 10
    failover_base: str = "acm-data/data"
    snapshot_base: str = "acm-data/snapshot"
    app_name: str = "ACM-SDK-Python"
    kms_enabled: bool = False
    region_id: str = ""
    kms_ak: str | None = None
    kms_secret: str | None = None
    key_id: str = ""
    no_snapshot: bool = False
    ram_role_name: str | None = None
    address_refresh_interval: float = 30.0
    tls_ca_file: str | None = None
    ram_metadata_url: str = "http://100.100.100.200"
    kms_endpoint: str | None = None
    kms_protocol: str = "https"

    @staticmethod
    def validate(values: Mapping[str, Any]) -> dict[str, Any]:
        """Check every name and value; return them normalised. Raises InvalidOptionError."""
        unknown = sorted(set(values) - set(_CHECKS))
        if unknown:
            raise InvalidOptionError(_unknown(unknown))
        return {name: _CHECKS[name](name, value) for name, value in values.items()}

    def update(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate all of ``values`` first, then apply them together; return what changed."""
        return self.apply(self.validate(values))

    def apply(self, checked: Mapping[str, Any]) -> dict[str, Any]:
        """Apply values ``validate`` returned; return what changed."""
        changed = {k: v for k, v in checked.items() if getattr(self, k) != v}
        for name, value in checked.items():
            setattr(self, name, value)
        return changed

    def __repr__(self) -> str:
        def show(name: str) -> str:
            value = getattr(self, name)
            return "'***'" if name in _SECRET_OPTIONS and value else repr(value)

        shown = ", ".join(f"{f.name}={show(f.name)}" for f in fields(self))
        return f"Options({shown})"


OPTION_NAMES: tuple[str, ...] = tuple(sorted(_CHECKS))
assert set(OPTION_NAMES) == {f.name for f in fields(Options)}
