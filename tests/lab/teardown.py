"""Last-resort teardown: whatever the lab started is stopped at exit.

Fixture finalizers are the normal path (pytest runs them after a failed test
and after Ctrl-C).  This module is the safety net behind them: callbacks
registered here run once, in reverse order, from ``atexit``; SIGTERM and
SIGHUP are turned into KeyboardInterrupt so pytest unwinds its fixtures as
it does for Ctrl-C instead of dying on the spot.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, Iterator, Optional

_lock = threading.Lock()
_callbacks: list[tuple[int, Callable[[], None]]] = []
_installed = False
_counter = 0


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def run_all() -> None:
    """Run (and forget) every registered callback, newest first."""
    while True:
        with _lock:
            if not _callbacks:
                return
            _key, callback = _callbacks.pop()
        try:
            callback()
        except Exception as error:  # keep going: the rest must still run
            print(f"vcp-lab teardown: {callback!r} failed: {error!r}")


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(run_all)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                signal.signal(signum, _interrupt)


def register(callback: Callable[[], None]) -> int:
    """Run ``callback`` at exit unless :func:`unregister` is called first."""
    global _counter
    with _lock:
        _install()
        _counter += 1
        _callbacks.append((_counter, callback))
        return _counter


def unregister(key: int) -> None:
    """Forget a callback (its owner cleaned up by itself)."""
    with _lock:
        _callbacks[:] = [(k, c) for k, c in _callbacks if k != key]


@contextlib.contextmanager
def started(start: Callable[[], None], stop: Callable[[], None]) -> Iterator[None]:
    """start(), then stop() when the block ends, or at exit if the test run is cut short."""
    key = register(stop)
    try:
        start()
        yield
    finally:
        unregister(key)
        stop()
