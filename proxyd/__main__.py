"""``proxyd``: check the settings, bind the public and admin listeners, then run the master."""

import logging
import sys
from typing import Optional, Sequence

from proxyd import settings
from proxyd.master import Master, bind, raise_file_limit
from resolverd import logs

log = logging.getLogger("proxyd")


def main(argv: Optional[Sequence[str]] = None) -> None:
    checked, contexts = settings.from_args(argv)
    logs.setup(checked.log_level)
    raise_file_limit()
    listeners = []
    for address in checked.listen + (checked.admin_listen,):
        try:
            listeners.append(bind(address))
        except OSError as exc:
            host, port = address
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            sys.exit(1)
    admin_socket = listeners.pop()
    sys.exit(Master(sys.argv[1:] if argv is None else argv, checked, contexts, listeners, admin_socket).run())


if __name__ == "__main__":
    main()
