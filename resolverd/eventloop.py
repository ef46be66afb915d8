"""libvirt's default event loop, run in a daemon thread of the serving process.

It must be registered before the first connection is opened, and it must keep
running for keepalive, domain/secret events and stream callbacks to work.
Call ``ensure_running()`` in the process that serves requests (the gunicorn
worker), never in a process that forks afterwards.
"""

import logging
import os
import threading
import time
from typing import Optional

import libvirt

log = logging.getLogger(__name__)

_lock = threading.Lock()
_running_in_pid: Optional[int] = None


def ensure_running() -> None:
    """Register and start the loop once per process; later calls return at once."""
    global _running_in_pid
    with _lock:
        if _running_in_pid == os.getpid():
            return
        if _running_in_pid is not None:
            raise RuntimeError("the libvirt event loop was started before a fork; start it in the worker")
        # Without a handler libvirt prints every error to stderr as well as raising it.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run, name="libvirt-events", daemon=True).start()
        _running_in_pid = os.getpid()


def _run() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError as exc:
            log.error("libvirt event loop iteration failed: %s", exc)
            time.sleep(0.1)
