"""The failed-token brake holds per client address across proxyd's workers, not per worker.

Which worker accepts a connection is the kernel's choice; the test makes
it by stopping (SIGSTOP) every worker but the one it wants, so the
failures are known to land on both.
"""

import os
import re
import signal
from contextlib import contextmanager
from typing import Iterator

from lab.polling import within
from lab.proxyd import Proxyd
from lab.wsstream import close_of

UNKNOWN = (1008, "unknown or expired token")


@contextmanager
def only_worker(proxy: Proxyd, pid: int) -> Iterator[None]:
    """Every other worker stopped while the block runs: ``pid`` accepts every connection."""
    others = [other for other in proxy.worker_pids() if other != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def refusals_by(proxy: Proxyd, pid: int, reason: str) -> int:
    return len(re.findall(rf"\[{pid}\]: refused client=\S+ reason={reason} ", proxy.log_text()))


def test_failures_spread_over_two_workers_bar_the_address_on_both(lab_run_dir, lab_pki, resolver, tokens):
    proxy = Proxyd(lab_run_dir, lab_pki, resolver, workers=2).start()
    try:
        first, second = proxy.worker_pids()
        with only_worker(proxy, first):
            for guess in range(3):
                with proxy.open(f"guess-{guess}") as ws:
                    assert close_of(ws) == UNKNOWN
        with only_worker(proxy, second):
            for guess in range(3, 5):
                with proxy.open(f"guess-{guess}") as ws:
                    assert close_of(ws) == UNKNOWN
            within(5, lambda: "too many failed token attempts from 127.0.0.1" in proxy.log_text())
            with proxy.open(tokens["serial1"]) as ws:  # a good token waits too
                code, reason = close_of(ws)
            assert code == 1008 and re.fullmatch(r"too many failed attempts; try again in \d+ s", reason)
        with only_worker(proxy, first):  # three failures of its own, yet barred
            with proxy.open(tokens["serial1"]) as ws:
                assert close_of(ws)[0] == 1008
        assert (refusals_by(proxy, first, "unknown_token"), refusals_by(proxy, second, "unknown_token")) == (3, 2)
        assert (refusals_by(proxy, first, "rate_limited"), refusals_by(proxy, second, "rate_limited")) == (1, 1)
    finally:
        proxy.stop()
