"""Fault injection: make the server fail on purpose so tests can exercise failover.

A :class:`Fault` matches requests by operation name and acts on at most ``times`` of them:
it can delay the answer, replace it with an error status, drop the connection without
answering, or cut the answer off part way through its body. Faults are tried in the order
they were added; the first active fault that matches a request is the only one applied to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .ops import OPS

__all__ = ["GRPC_OP_PREFIX", "Fault", "FaultInjector"]

#: Nacos gRPC calls are named this prefix and their request type (``grpc:ConfigQueryRequest``).
GRPC_OP_PREFIX = "grpc:"


def _is_grpc_op(op: str) -> bool:
    return op.startswith(GRPC_OP_PREFIX) and op[len(GRPC_OP_PREFIX) :].isidentifier()


@dataclass(eq=False)
class Fault:
    """One injected failure.

    Attributes:
        ops: the operations it applies to (names from ``OPS``, or ``grpc:`` and a Nacos gRPC
            request type), or ``None`` for every request (gRPC calls included).
        status: answer this status (with ``body``) instead of the real answer.
        delay: sleep this many seconds before answering (the real answer, ``status``, or the
            drop). ``stop()`` cuts the sleep short.
        drop: close the connection without any answer.
        truncate: send the status line, the headers (announcing the whole body) and only this
            many bytes of the body (the real answer's, or ``status``'s), then close the
            connection: a connection reset mid-body.
        times: how many requests it applies to; ``None`` for every request until removed.
        body: the response body sent with ``status``.
        hits: how many requests it has been applied to so far.
    """

    ops: frozenset[str] | None = None
    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    times: int | None = None
    body: str = ""
    truncate: int | None = None
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.ops is not None:
            unknown = sorted(op for op in self.ops - set(OPS) if not _is_grpc_op(op))
            if unknown:
                raise ValueError(
                    f"unknown op(s) {unknown}; expected some of {list(OPS)}"
                    f" or {GRPC_OP_PREFIX!r} and a Nacos gRPC request type"
                )
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, not {self.status}")
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for every request")
        if self.drop and self.status is not None:
            raise ValueError("a fault either answers a status or drops the connection, not both")
        if self.truncate is not None and (self.truncate < 0 or self.drop):
            raise ValueError("truncate must be >= 0, and cannot be combined with drop")
        if not self.drop and self.status is None and not self.delay and self.truncate is None:
            raise ValueError("a fault needs a status, a delay, truncate or drop=True")

    @property
    def remaining(self) -> int | None:
        """How many more requests it will apply to (``None``: unlimited)."""
        return None if self.times is None else max(0, self.times - self.hits)

    @property
    def active(self) -> bool:
        """Whether it still applies to requests."""
        return self.times is None or self.hits < self.times

    def matches(self, op: str) -> bool:
        """Whether it applies to a request of operation ``op`` now."""
        return self.active and (self.ops is None or op in self.ops)


class FaultInjector:
    """The ordered set of faults of one server."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(
        self,
        op: str | Iterable[str] | None = None,
        *,
        status: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int | None = None,
        body: str | None = None,
        truncate: int | None = None,
    ) -> Fault:
        """Create a fault, add it after the existing ones and return it (see ``Fault``)."""
        ops = None if op is None else frozenset([op] if isinstance(op, str) else op)
        if body is None:
            body = f"fault injected by the test server: {status}" if status is not None else ""
        fault = Fault(
            ops=ops,
            status=status,
            delay=delay,
            drop=drop,
            times=times,
            body=body,
            truncate=truncate,
        )
        self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        """Remove one fault; removing a fault that is not there does nothing."""
        if fault in self._faults:
            self._faults.remove(fault)

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    def take(self, op: str) -> Fault | None:
        """Return the first active fault that matches ``op`` and count the hit, or ``None``."""
        for fault in self._faults:
            if fault.matches(op):
                fault.hits += 1
                return fault
        return None

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults))

    def __len__(self) -> int:
        return len(self._faults)
