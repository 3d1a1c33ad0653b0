"""The ``aioacm`` command-line tool: the sync ``acm`` CLI's commands over the asyncio client,
plus ``watch`` and ``server``. Run ``aioacm --help`` (or ``python -m aioacm --help``).

Settings are the sync CLI's ``~/.acm.json``. Exit codes are listed in :mod:`aioacm.cli.exits`.
"""

from .main import main, run

__all__ = ["main", "run"]
