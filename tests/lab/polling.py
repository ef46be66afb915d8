"""Waiting for a condition that another process makes true."""

from __future__ import annotations

import time
from typing import Callable


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Poll ``condition`` until true; the time it took, or AssertionError after ``seconds``."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > seconds:
            raise AssertionError(f"not true within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - began
