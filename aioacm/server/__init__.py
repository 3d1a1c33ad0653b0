"""A bundled ACM- and Nacos-compatible server (aiohttp.web, and grpc.aio for Nacos's gRPC API
on the HTTP port + 1000) for tests, demos and local development.

Run it in-process with :class:`LocalACMServer`, or standalone with
``python -m aioacm.server --port 8080`` (also installed as ``aioacm-server``).
"""

from .faults import Fault
from .ops import OPS
from .records import RequestRecord
from .server import LocalACMServer
from .store import ConfigItem

__all__ = ["OPS", "ConfigItem", "Fault", "LocalACMServer", "RequestRecord"]
