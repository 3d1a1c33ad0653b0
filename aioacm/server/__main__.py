"""Run the bundled ACM server standalone: ``python -m aioacm.server`` (or ``aioacm-server``).

It serves ACM and Nacos over HTTP on ``--port`` and Nacos's gRPC API on that port + 1000
(unless ``--no-grpc``), until SIGINT or SIGTERM, then stops cleanly and exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from .server import LocalACMServer

__all__ = ["main"]


def _credential(text: str) -> tuple[str, str]:
    access_key, sep, secret_key = text.partition(":")
    if not sep or not access_key or not secret_key:
        raise argparse.ArgumentTypeError("expected ACCESS_KEY:SECRET_KEY")
    return access_key, secret_key


def _user(text: str) -> tuple[str, str]:
    username, sep, password = text.partition(":")
    if not sep or not username or not password:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return username, password


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioacm-server",
        description="A config server speaking ACM and Nacos (HTTP, and gRPC on the HTTP port"
        " + 1000) for tests and local development.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument(
        "--no-grpc",
        dest="grpc",
        action="store_false",
        help="do not serve Nacos's gRPC API (on the HTTP port + 1000)",
    )
    parser.add_argument(
        "--data", metavar="FILE", help="JSON file to load items from and save them to"
    )
    parser.add_argument(
        "--credentials",
        metavar="AK:SK",
        type=_credential,
        nargs="+",
        action="extend",
        default=[],
        help="require requests signed with one of these access keys",
    )
    parser.add_argument(
        "--users",
        metavar="USER:PASSWORD",
        type=_user,
        nargs="+",
        action="extend",
        default=[],
        help="turn Nacos auth on: these users log in for a token",
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=18000.0,
        metavar="SECONDS",
        help="how long a Nacos login token is valid (default 18000)",
    )
    parser.add_argument(
        "--signature-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how far a signed request's timeStamp may be off (default 60)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of the 'aioacm.server' logger",
    )
    return parser


async def _serve(args: argparse.Namespace) -> int:
    server = LocalACMServer(
        args.host,
        args.port,
        credentials=dict(args.credentials) or None,
        data_file=args.data,
        signature_window=args.signature_window,
        users=dict(args.users) or None,
        token_ttl=args.token_ttl,
        grpc=args.grpc,
        # Running for days: keep the request log from growing without bound.
        request_log_limit=1000,
    )
    try:
        await server.start()
    except (OSError, ValueError) as exc:
        print(f"aioacm-server: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)
    # the first line ends with the HTTP endpoint (scripts read it); the gRPC port follows
    print(f"aioacm-server listening on {server.endpoint}", flush=True)
    if server.grpc_port is not None:
        print(f"aioacm-server: Nacos gRPC on port {server.grpc_port}", flush=True)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the server until a signal, return 0.

    Args:
        argv: the command-line arguments, without the program name.

    Returns:
        The exit status: 0 after a clean stop, 1 when the server could not start.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioacm.server").setLevel(args.log_level)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
