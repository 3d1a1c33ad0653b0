"""Running one command: dispatch, the error boundary, logging, and Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence

from ..errors import AccessDeniedError, ACMException
from . import copying, items, namespaces, transfer, watching
from .console import Console
from .context import Context
from .exits import BROKEN_PIPE, FAILURE, INTERRUPTED, USAGE, CLIError, classify
from .parser import build_parser

__all__ = ["main", "run"]

Command = Callable[[Context], Awaitable[int]]

COMMANDS: dict[str, Command] = {
    "add": namespaces.add,
    "use": namespaces.use,
    "current": namespaces.current,
    "show": namespaces.show,
    "list": items.list_items,
    "pull": items.pull,
    "push": items.push,
    "export": transfer.export,
    "import": transfer.import_,
    "copy": copying.copy,
    "watch": watching.watch,
}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"aioacm: {record.levelname.lower()}: {record.getMessage()}"


@contextlib.contextmanager
def _log_to(console: Console, level: int) -> Iterator[None]:
    """Show the library's log records of ``level`` and above on stderr, for this run only.

    One-shot commands report their own errors, so they show only ERROR; ``watch`` also shows
    the warnings of a poller that lost its server; ``--debug`` shows everything.
    """
    logger = logging.getLogger("aioacm")
    handler = logging.StreamHandler(console.err)
    handler.setFormatter(_Formatter())
    handler.setLevel(level)
    old_level = logger.level
    logger.addHandler(handler)
    if level < logging.WARNING:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def unrecognized(parser: argparse.ArgumentParser, command: str | None, extras: list[str]) -> str:
    """The usage error for arguments no parser took, with the nearest flag of the command."""
    flags: list[str] = []
    for action in parser._actions:  # argparse offers no public walk of its parsers
        flags += action.option_strings
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            for sub_action in action.choices[command]._actions:
                flags += sub_action.option_strings
    hints = []
    for extra in extras:
        name = extra.split("=", 1)[0]
        close = (
            difflib.get_close_matches(name, flags, n=1, cutoff=0.6) if name.startswith("-") else []
        )
        hints.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
    where = f"aioacm {command}" if command else "aioacm"
    return f"unrecognized arguments: {' '.join(hints)}; see '{where} --help'"


def describe(exc: ACMException, ctx: Context) -> str:
    """One line for an aioacm error, naming the namespace it happened in and, for a refused
    access, what to change with this tool (the library's own hint names API arguments)."""
    entry = ctx.entry
    if not isinstance(exc, AccessDeniedError) or entry is None:
        return str(exc)
    by = f" by {exc.server}" if exc.server else ""
    target = entry.spec
    if entry.kind == "nacos" and entry.username is not None:
        hint = (
            f"check the password of the Nacos user {entry.username!r}"
            f" (change it with 'aioacm add {target.replace('://', f'://{entry.username}@', 1)}"
            " --password ...')"
        )
    elif entry.kind == "nacos":
        hint = f"the server wants a login: use nacos://USER@{target.removeprefix('nacos://')}"
    elif entry.info.get("ak") or entry.info.get("ram_role_name"):
        hint = "check the AccessKey/SecretKey or RAM role ('aioacm current' shows them)"
    else:
        hint = f"the server wants keys: 'aioacm add {target} -a ACCESS_KEY -s SECRET_KEY'"
    return f"access denied{by} (403) to {entry.describe()}: {hint}"


async def run(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """Run one command (any but ``server``) on the running event loop.

    Args:
        argv: the arguments, without the program name (default: ``sys.argv[1:]``).
        console: where to write (default: the process's stdout, stderr and stdin).

    Returns:
        The exit code (see ``aioacm --help``).
    """
    if console is None:
        console = Console(sys.stdout, sys.stderr, sys.stdin)
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else USAGE
    if extras:
        console.error(unrecognized(parser, args.command, extras))
        return USAGE
    if args.command is None:
        parser.print_help(console.err)
        return USAGE
    if args.command == "server":
        console.error("'server' must come first: aioacm server [--port N ...]")
        return USAGE
    ctx = Context(args, console)
    level = logging.DEBUG if args.debug else logging.WARNING
    if args.command != "watch" and not args.debug:
        level = logging.ERROR
    with _log_to(console, level):
        try:
            return await COMMANDS[args.command](ctx)
        except CLIError as exc:
            console.error(exc.message)
            return exc.code
        except ACMException as exc:
            console.error(describe(exc, ctx))
            return classify(exc)
        except BrokenPipeError:  # `aioacm list | head`: the reader left; main() ends quietly
            raise
        except asyncio.CancelledError:
            if args.command != "watch":
                console.error("interrupted")
            raise
        except Exception as exc:
            if args.debug:
                traceback.print_exc(file=console.err)
            console.error(f"unexpected {type(exc).__name__}: {exc} (--debug shows more)")
            return FAILURE


async def _run_until_signal(argv: Sequence[str]) -> int:
    """``run`` with SIGINT/SIGTERM cancelling it cleanly (clients closed, no traceback)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:  # a second Ctrl-C must not interrupt the clean-up of the first
            received.append(signum)
            task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)

    @contextlib.contextmanager
    def prompting() -> Iterator[None]:
        # A blocking read ignores the loop's handler: let Ctrl-C raise KeyboardInterrupt.
        if signal.SIGINT not in installed:
            yield
            return
        loop.remove_signal_handler(signal.SIGINT)
        try:
            yield
        finally:
            loop.add_signal_handler(signal.SIGINT, on_signal, signal.SIGINT)

    console = Console(sys.stdout, sys.stderr, sys.stdin)
    console.prompt_guard = prompting
    try:
        return await run(argv, console)
    except asyncio.CancelledError:
        if not received:
            raise
        return 128 + received[0]
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``aioacm`` console script: run one command, return its exit code.

    Args:
        argv: the arguments, without the program name (default: ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
    if first is not None and args[first] == "server" and set(args[:first]) <= {"--debug"}:
        from ..server.__main__ import main as server_main

        return server_main(args[first + 1 :], prog="aioacm server")
    try:
        return asyncio.run(_run_until_signal(args))
    except KeyboardInterrupt:  # before the handlers were installed, or after
        return INTERRUPTED
    except BrokenPipeError:
        # Nobody reads stdout any more: point it at /dev/null so the interpreter's final flush
        # does not complain, and leave as a process killed by SIGPIPE would be reported.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
