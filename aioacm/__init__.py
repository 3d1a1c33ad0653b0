"""aioacm: an asyncio client for Alibaba Cloud ACM, with a bundled ACM-compatible server."""

from ._version import __version__
from .auth import (
    Credentials,
    CredentialsProvider,
    RamRoleCredentialsProvider,
    StaticCredentialsProvider,
)
from .base import ConfigClient, WatchCallback
from .client import ACMClient
from .dispatch import ConfigChange
from .errors import (
    AccessDeniedError,
    ACMException,
    ACMRequestException,
    BadRequestError,
    ClientClosedError,
    ConfigNotFoundError,
    CredentialsError,
    InvalidOptionError,
    InvalidParameterError,
    KMSError,
    ServerUnavailableError,
)
from .keys import DEFAULT_GROUP
from .stats import ClientStats

__all__ = [
    "DEFAULT_GROUP",
    "ACMClient",
    "ACMException",
    "ACMRequestException",
    "AccessDeniedError",
    "BadRequestError",
    "ClientClosedError",
    "ClientStats",
    "ConfigChange",
    "ConfigClient",
    "ConfigNotFoundError",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "InvalidOptionError",
    "InvalidParameterError",
    "KMSError",
    "RamRoleCredentialsProvider",
    "ServerUnavailableError",
    "StaticCredentialsProvider",
    "WatchCallback",
    "__version__",
]
