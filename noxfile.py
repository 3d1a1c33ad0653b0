"""The one entry point for tests, lint, types and benchmarks (CI runs the same sessions)."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

RUFF = "ruff==0.17.5"
MYPY = "mypy==2.4.1"
# the official async Nacos client (nacos-sdk-python 3.x), a peer in a venv of its own: the test
# extra holds the legacy 2.x, the same distribution name (tests/test_nacos_official_client.py)
NACOS3_VENV = Path("tests/.peers/nacos3")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite against the bundled server (warnings are errors)."""
    session.install("-e", ".[test]")
    # the npm nacos client, a peer the Nacos tests run against the bundled server
    session.run("npm", "ci", "--prefix", "tests/js", "--no-audit", "--no-fund", external=True)
    if not (NACOS3_VENV / "bin" / "python").exists():
        session.run("python", "-m", "venv", "--clear", str(NACOS3_VENV))
    session.run(
        str(NACOS3_VENV / "bin" / "python"),
        *("-m", "pip", "install", "-q", "--disable-pip-version-check"),
        *("-r", "tests/peers/nacos3-requirements.txt"),
        external=True,
    )
    session.run("pytest", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The long run of the load test (not a default session): 10,000 watched keys and rounds of
    gets under random faults for ``AIOACM_LOAD_SECONDS`` (default here 300)."""
    session.install("-e", ".[test]")
    seconds = os.environ.get("AIOACM_LOAD_SECONDS") or "300"
    session.run(
        "pytest", "tests/test_load.py", *session.posargs, env={"AIOACM_LOAD_SECONDS": seconds}
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", MYPY, "types-aiofiles", "types-grpcio")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks (not a default session): ``nox -s bench -- --quick`` for a tiny run."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)
