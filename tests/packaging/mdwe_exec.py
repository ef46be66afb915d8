"""Run a command with memory never both writable and executable, as MemoryDenyWriteExecute=yes does.

systemd 254 and later apply the setting with prctl(PR_SET_MDWE) where the
kernel has it (Linux 6.3), earlier ones with a seccomp filter; both refuse
writable-and-executable mappings and making a mapping executable later.  The
flag survives execve and fork, so the command and its children keep it.

Usage: python3 mdwe_exec.py COMMAND [ARG...]
"""

import ctypes
import mmap
import os
import sys

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_MDWE): {os.strerror(ctypes.get_errno())}")
    try:
        mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        os.execv(sys.argv[1], sys.argv[1:])
    sys.exit("MDWE is not in force: a writable and executable mapping was allowed")


if __name__ == "__main__":
    main()
