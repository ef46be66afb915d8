"""A child subreaper that runs the private libvirtd (a standalone script).

Usage: ``python3 reaper.py PROGRAM [ARGS...]``.  It marks itself
PR_SET_CHILD_SUBREAPER, starts PROGRAM, writes PROGRAM's pid on stdout, and
then reaps every child until none is left.

Why: libvirtd daemonizes QEMU (double fork), so every guest is an orphan.
Without a subreaper orphans go to PID 1, which on these machines reaps only
every ~2 s, and libvirt waits for the zombie to vanish: each
virDomainDestroy took 1.4-2 s.  With this process as their reaper a destroy
is immediate.  It outlives PROGRAM while guests run (like QEMU outlives a
libvirtd restart) and exits once the last one is gone.

SIGTERM or SIGINT to the reaper means "end it all": it SIGTERMs every child
(PROGRAM and the guests it adopted), SIGKILLs what is left 5 s later, and
exits when all are reaped.  It gets SIGTERM itself when the test process
that started it dies (PR_SET_PDEATHSIG), so even a SIGKILLed pytest leaves
no guest behind; PROGRAM gets SIGTERM if the reaper dies.

No imports beyond the standard library: it runs as the lab account under
the system python, copied into the run directory.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _children() -> list:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        if int(stat.rsplit(b")", 1)[1].split()[1]) == me:
            found.append(int(entry))
    return found


def main(argv: list) -> int:
    if not argv:
        print("usage: reaper.py PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        try:
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    def end_all(signum: int, _frame: object) -> None:
        for pid in _children():
            try:
                os.kill(pid, signal.SIGKILL if signum == signal.SIGALRM else signal.SIGTERM)
            except ProcessLookupError:
                pass
        if signum != signal.SIGALRM:
            signal.alarm(5)

    signal.signal(signal.SIGTERM, end_all)
    signal.signal(signal.SIGINT, end_all)
    signal.signal(signal.SIGALRM, end_all)
    sys.stdout.write(f"{child}\n")
    sys.stdout.flush()
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
