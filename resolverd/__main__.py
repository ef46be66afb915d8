"""``resolverd``: check the settings, then serve the API through gunicorn configured in code."""

import sys
from typing import Optional, Sequence

from resolverd import logs, settings
from resolverd.server import ResolverApplication


def main(argv: Optional[Sequence[str]] = None) -> None:
    checked = settings.from_args(argv)
    logs.setup(checked.log_level)
    ResolverApplication(checked, sys.argv[1:] if argv is None else argv).run()


if __name__ == "__main__":
    main()
