"""``python -m resolveradm`` and the ``resolveradm`` console script."""

import sys

from resolveradm.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
