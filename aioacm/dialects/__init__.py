"""Dialects: one protocol each, behind one small interface.

A dialect knows everything about one server protocol and does no I/O: what a key and a
content may be, how an md5 is computed, what a get/publish/remove/list request looks like and
how its answer reads, where the signature goes and what it covers, which servers to talk to,
and how the client learns that watched keys changed. The rest of aioacm (transport, lookup
chain, stores, watching, dispatch) is the same for every protocol:

- requests and answers: the dialect *builds* a ``Request`` (``query``, ``publish``, ...), the
  transport sends it and maps failures to aioacm errors, the dialect *reads* the ``Response``
  (``read_query``, ``read_page``, ...);
- watching: ``change_feed`` gives the watch machinery a ``ChangeFeed`` that tells it "the
  server says these keys differ from the md5s you hold" (a long poll's answer, or a gRPC push)
  and "the server agrees with the md5s you hold" (a first poll that names nothing);
- servers: ``server_plan`` says where the server list comes from (a fixed list or an address
  server) and the default port.

``aioacm/dialects/acm.py`` is ACM (its paths, GBK forms, Spas signatures). A new protocol is
one new module here implementing ``Dialect``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..keys import Item
from ..wire import Fetched, Request, Response, Send, Server, ServerPlan, Signer

if TYPE_CHECKING:
    from ..options import Options
    from ..watch import ChangeFeed, ChangeSink

__all__ = [
    "Dialect",
    "Fetched",
    "Request",
    "Response",
    "Send",
    "Server",
    "ServerPlan",
    "Signer",
]


class Dialect(abc.ABC):
    """One server protocol (see the module docstring). Pure: no I/O, no task."""

    #: the protocol's name, in messages and stats
    name: ClassVar[str]
    #: the namespace every request of this client is about ("" for the default one)
    namespace: str

    # -- keys and contents -----------------------------------------------------------------

    @abc.abstractmethod
    def check_key(self, data_id: object, group: object) -> tuple[str, str]:
        """``(data_id, group)`` checked and normalized; InvalidParameterError otherwise."""

    @abc.abstractmethod
    def check_content(self, content: object) -> str:
        """The text to publish (bytes are taken as UTF-8); InvalidParameterError for what the
        server cannot store."""

    @abc.abstractmethod
    def content_md5(self, content: str | None) -> str:
        """The md5 the server compares (``""`` when there is no value)."""

    # -- requests and answers --------------------------------------------------------------

    @abc.abstractmethod
    def query(self, item: Item) -> Request:
        """The request that reads ``item`` (built once per key: keep it cheap to send)."""

    @abc.abstractmethod
    def read_query(self, response: Response, item: Item) -> Fetched | None:
        """The item in an answer to ``query``; None when it does not exist."""

    @abc.abstractmethod
    def publish(
        self,
        item: Item,
        content: str,
        *,
        data_key: str | None = None,
        config_type: str | None = None,
        cas_md5: str | None = None,
    ) -> Request:
        """The request that creates or replaces ``item``."""

    @abc.abstractmethod
    def remove(self, item: Item) -> Request:
        """The request that removes ``item``."""

    def read_ack(self, response: Response, item: Item) -> None:  # noqa: B027 (optional hook)
        """Check the answer to a publish or remove (raise on a refusal a 200 may carry); by
        default a status the request accepts is enough."""

    @abc.abstractmethod
    def list_page(self, page: int, size: int) -> Request:
        """The request for one page of the namespace's items."""

    @abc.abstractmethod
    def read_page(self, response: Response) -> dict[str, Any]:
        """One list page: ``totalCount``, ``pageNumber``, ``pagesAvailable``, ``pageItems``."""

    # -- servers, framing, auth, watching ----------------------------------------------------

    @abc.abstractmethod
    def server_plan(self) -> ServerPlan:
        """Where the server list comes from (read again at every load: options change)."""

    @abc.abstractmethod
    def common_headers(self, body: bool) -> Mapping[str, str]:
        """Headers every request carries (``body``: it has one); the same dict every time
        for the same arguments: the transport never changes it."""

    @abc.abstractmethod
    def signer(self) -> Signer | None:
        """What signs requests now, or None when requests go unsigned."""

    def denied_hint(self) -> str:
        """What to check when the server answers 403, for the error's message (never a
        secret): ``check the AccessKey/SecretKey``..."""
        return "check the credentials"

    async def refused(
        self, request: Request, reason: str = "", sent: Mapping[str, str] | None = None
    ) -> bool:
        """A signed request was refused with 403 (``reason``: what the server said; ``sent``:
        the headers the refused attempt carried): renew the credentials and say True to have
        it sent once more (the default: the 403 stands)."""
        return False

    def attach(self, send: Send | None) -> None:  # noqa: B027 (optional hook)
        """The transport's ``send`` when the client opens (None when it closes), for a dialect
        that must ask servers things of its own (a login)."""

    @abc.abstractmethod
    def change_feed(self, sink: ChangeSink, send: Send, options: Options) -> ChangeFeed:
        """The source of change news for the watch machinery (see ``aioacm.watch``)."""
