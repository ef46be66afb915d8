"""How long the lab took to come up, for the end-of-run summary."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

#: name -> seconds, in the order first recorded.
TIMINGS: dict[str, float] = {}


def record(name: str, seconds: float) -> None:
    """Remember the first measurement under ``name``."""
    TIMINGS.setdefault(name, seconds)


@contextmanager
def measure(name: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    record(name, time.monotonic() - began)


def summary() -> str:
    return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in TIMINGS.items())
