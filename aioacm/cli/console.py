"""Terminal output: colours only on a terminal (honouring ``NO_COLOR``), a progress bar only
when stderr is a terminal, prompts, and raw bytes on stdout."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import IO, TextIO

from .exits import INTERRUPTED, CLIError

__all__ = ["Console", "Progress", "wants_color"]

_COLORS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def wants_color(stream: IO[str], env: Mapping[str, str]) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set non-empty (no-color.org) or
    ``TERM=dumb``."""
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    return _isatty(stream)


class Console:
    """Where the tool writes: data on ``out``, messages, progress and prompts on ``err``.

    Args:
        out: standard output (data: config content, lists, changes).
        err: standard error (errors, warnings, progress).
        inp: standard input (prompts, ``push`` without ``-f``).
        env: the environment (``NO_COLOR``, ``TERM``).
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        inp: TextIO,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.out = out
        self.err = err
        self.inp = inp
        self.out_color = wants_color(out, env)
        self.err_color = wants_color(err, env)
        self.err_tty = _isatty(err)
        # Wraps a blocking read from ``inp``: ``main`` lets Ctrl-C interrupt it there.
        self.prompt_guard: Callable[[], contextlib.AbstractContextManager[None]] = (
            contextlib.nullcontext
        )

    @staticmethod
    def _paint(text: str, color: str, enabled: bool) -> str:
        return f"\033[{_COLORS[color]}m{text}\033[0m" if enabled else text

    def paint(self, text: object, color: str) -> str:
        """``text`` in ``color`` when stdout shows colours."""
        return self._paint(str(text), color, self.out_color)

    def print(self, text: str = "") -> None:
        """One line on stdout."""
        print(text, file=self.out, flush=True)

    def write_data(self, content: str) -> None:
        """Content exactly as stored (UTF-8, no newline added), whatever stdout's encoding."""
        self.out.flush()
        buffer = getattr(self.out, "buffer", None)
        if buffer is None:
            self.out.write(content)
            self.out.flush()
            return
        buffer.write(content.encode("utf-8"))
        buffer.flush()

    def info(self, text: str) -> None:
        """A status line on stderr."""
        print(text, file=self.err, flush=True)

    def warn(self, text: str) -> None:
        """``aioacm: warning: ...`` on stderr."""
        label = self._paint("warning:", "yellow", self.err_color)
        print(f"aioacm: {label} {text}", file=self.err, flush=True)

    def error(self, text: str) -> None:
        """``aioacm: error: ...`` on stderr."""
        label = self._paint("error:", "red", self.err_color)
        print(f"aioacm: {label} {text}", file=self.err, flush=True)

    @property
    def can_ask(self) -> bool:
        """Whether a question can be answered: stdin is a terminal."""
        return _isatty(self.inp)

    def confirm(self, question: str) -> bool:
        """Ask ``question (y/n)`` on stderr until the answer is y or n; end of input is "n".

        Raises:
            CLIError: (INTERRUPTED) Ctrl-C at the prompt.
        """
        while True:
            print(f"{question} (y/n) ", end="", file=self.err, flush=True)
            try:
                with self.prompt_guard():
                    line = self.inp.readline()
            except KeyboardInterrupt:
                print(file=self.err, flush=True)
                raise CLIError("interrupted", INTERRUPTED) from None
            if not line:
                print(file=self.err, flush=True)
                return False
            answer = line.strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            print("Please answer y or n.", file=self.err, flush=True)

    def secret(self, prompt: str) -> str | None:
        """Ask for a secret on the terminal without echoing it; None when stdin is not a
        terminal (nobody to ask) or the answer is empty.

        Raises:
            CLIError: (INTERRUPTED) Ctrl-C at the prompt.
        """
        if not _isatty(self.inp):
            return None
        try:
            with self.prompt_guard():
                answer = getpass.getpass(prompt, stream=self.err)
        except KeyboardInterrupt:
            print(file=self.err, flush=True)
            raise CLIError("interrupted", INTERRUPTED) from None
        except EOFError:
            return None
        return answer or None

    def progress(self, label: str, total: int) -> Progress:
        """A progress bar on stderr, drawn only when stderr is a terminal."""
        return Progress(self.err, label, total, enabled=self.err_tty)


class Progress:
    """``label [#####.....] done/total`` redrawn in place, at most ten times a second.

    Args:
        stream: where to draw (stderr).
        label: what is being done ("exporting").
        total: how many steps make 100%.
        enabled: draw at all (False when stderr is piped: then it is silent).
    """

    _INTERVAL = 0.1

    def __init__(self, stream: TextIO, label: str, total: int, *, enabled: bool) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self.enabled = enabled and total > 0
        self._drawn_at = 0.0
        self._shown = False

    def advance(self, ok: bool = True) -> None:
        """Count one step, failed or not; redraw if it is time to."""
        self.done += 1
        if not ok:
            self.failed += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if self.done == self.total or now - self._drawn_at >= self._INTERVAL:
            self._drawn_at = now
            self._draw()

    def render(self, width: int) -> str:
        """The bar as text, fitting in ``width`` columns."""
        counts = f" {self.done}/{self.total}"
        if self.failed:
            counts += f" ({self.failed} failed)"
        room = max(10, min(40, width - len(self.label) - len(counts) - 4))
        filled = room * self.done // self.total if self.total else room
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}]{counts}"

    def _draw(self) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r" + self.render(width)[: width - 1] + "\033[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the bar's line (if one was drawn), so later messages start on a fresh line."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
