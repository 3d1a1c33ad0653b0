"""``python -m aioacm``: the command-line tool (the same as the ``aioacm`` script)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
