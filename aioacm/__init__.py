"""aioacm: an asyncio client for Alibaba Cloud ACM and Nacos, and a bundled server for both."""

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
    ConflictError,
    CredentialsError,
    InvalidOptionError,
    InvalidParameterError,
    KMSError,
    ServerUnavailableError,
    WrongEventLoopError,
)
from .exact import ConfigItem
from .keys import DEFAULT_GROUP
from .nacos import NacosClient
from .options import Options
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
    "ConfigItem",
    "ConfigNotFoundError",
    "ConflictError",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "InvalidOptionError",
    "InvalidParameterError",
    "KMSError",
    "NacosClient",
    "Options",
    "RamRoleCredentialsProvider",
    "ServerUnavailableError",
    "StaticCredentialsProvider",
    "WatchCallback",
    "WrongEventLoopError",
    "__version__",
]
