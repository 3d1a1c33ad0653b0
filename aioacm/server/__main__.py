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
from typing import NoReturn

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


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, not {text!r}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser(prog: str = "aioacm-server") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="A config server for tests and local development, speaking ACM"
        " (/diamond-server) and Nacos (/nacos over HTTP, and gRPC on the HTTP port + 1000),"
        " over one store.",
        epilog="clients: ACMClient('HOST:PORT') or 'aioacm add HOST:PORT:NAMESPACE_ID' for"
        " ACM;\n         NacosClient('HOST:PORT') or 'aioacm add nacos://HOST:PORT/' for Nacos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="HTTP port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--no-grpc",
        dest="grpc",
        action="store_false",
        help="do not serve Nacos's gRPC API (on the HTTP port + 1000)",
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="JSON file to load items from and save them to (default: keep them in memory)",
    )
    parser.add_argument(
        "--credentials",
        metavar="AK:SK",
        type=_credential,
        nargs="+",
        action="extend",
        default=[],
        help="require requests signed with one of these access keys (default: no signatures)",
    )
    parser.add_argument(
        "--users",
        metavar="USER:PASSWORD",
        type=_user,
        nargs="+",
        action="extend",
        default=[],
        help="turn Nacos auth on: these users log in for a token (default: auth off)",
    )
    parser.add_argument(
        "--token-ttl",
        type=_seconds,
        default=18000.0,
        metavar="SECONDS",
        help="how long a Nacos login token is valid (default: %(default)g)",
    )
    parser.add_argument(
        "--signature-window",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how far a signed request's timeStamp may be off (default: %(default)g)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of the 'aioacm.server' logger (default: %(default)s)",
    )
    return parser


async def _serve(args: argparse.Namespace, prog: str) -> int:
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
        print(f"{prog}: error: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)
    # the first line ends with the HTTP endpoint (scripts read it); what it serves follows
    print(f"{prog} listening on {server.endpoint}", flush=True)
    grpc = f", gRPC on port {server.grpc_port}" if server.grpc_port is not None else ""
    auth = ", Nacos auth on" if args.users else ""
    print(
        f"{prog}: serving ACM (http://{server.endpoint}/diamond-server) and Nacos"
        f" (http://{server.endpoint}/nacos{grpc}){auth}; Ctrl-C stops it",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "aioacm-server") -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the server until a signal, return 0.

    Args:
        argv: the command-line arguments, without the program name.
        prog: the name to show in help and messages (``aioacm server`` from the CLI).

    Returns:
        The exit status: 0 after a clean stop, 1 when the server could not start, 2 for a
        usage error.
    """
    try:
        args = _parser(prog).parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported on one line
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioacm.server").setLevel(args.log_level)
    try:
        return asyncio.run(_serve(args, prog))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
