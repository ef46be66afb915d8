"""One console session once both legs are up: the relay, its two log lines, and the one way it ends.

Whatever ends it first (the tenant's close frame or disconnect, QEMU closing
or dying, the idle timeout, a missed pong, the end of a drain) calls
``end``; the tenant then gets a close frame with the reason, the console leg
is closed, and one log line says who, what, how many bytes each way and how
long.  Tokens never appear; the open line names the token by its hash.
"""

import logging
import time
from typing import Callable, Optional, Union

from websockets.frames import CloseCode

from proxyd.metrics import WorkerMetrics
from proxyd.relay import ConsoleLeg, link
from proxyd.resolver import Console
from proxyd.stream_leg import StreamLeg
from proxyd.websocket import WebSocketLeg

log = logging.getLogger(__name__)

REFUSED_WITHIN = 1.0  # a console that closes this soon without a byte refused us


class Session:
    def __init__(self, client: Union[WebSocketLeg, StreamLeg], console_leg: ConsoleLeg, console: Console, peer: str,
                 metrics: WorkerMetrics, on_end: Callable[["Session"], None], *, secondary: bool = False) -> None:
        """``secondary``: a SPICE channel other than main, which ends with its main channel instead of idling
        out and counts as a channel of the session its main channel opened."""
        self.client = client
        self.console_leg = console_leg
        self.console = console
        self.peer = peer
        self.started = time.monotonic()
        self.last_data = self.started
        self.ended = False
        self._metrics = metrics
        self._on_end = on_end
        self._reported = (0, 0)  # to_console, to_client at the last look
        self._secondary = secondary

    @property
    def to_console(self) -> int:
        return self.client.received

    @property
    def to_client(self) -> int:
        return self.console_leg.received

    def start(self, token_ref: str, detail: str = "") -> None:
        """``detail``: more ``key=value`` fields for the log line."""
        log.info("session open client=%s domain=%s type=%s console=%s token=%s%s", self.peer, self.console.domain,
                 self.console.type, self.console.address, token_ref, f" {detail}" if detail else "")
        self.client.on_closing = self._tenant_closing
        self.client.on_lost(self._tenant_lost)
        self.console_leg.on_lost(self._console_lost)
        self._metrics.relay_started(self.console.type, self._secondary)
        link(self.client, self.console_leg)

    def take_stock(self, now: float) -> float:
        """Adds what moved since the last look to the worker's byte counters; seconds since a look last saw
        console data move either way."""
        to_console, to_client = self.to_console, self.to_client
        previous_console, previous_client = self._reported
        if (to_console, to_client) != self._reported or self._secondary:
            self.last_data = now
        self._metrics.relay_moved(self.console.type, to_console - previous_console, to_client - previous_client)
        self._reported = (to_console, to_client)
        return now - self.last_data

    def end(self, code: int, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.client.close_with(code, reason)
        self.console_leg.close()
        self.take_stock(time.monotonic())
        self._metrics.relay_ended(self.console.type, self._secondary)
        log.info("session close client=%s domain=%s type=%s to_console=%d to_client=%d duration=%.3f reason=%r",
                 self.peer, self.console.domain, self.console.type, self.to_console, self.to_client,
                 time.monotonic() - self.started, reason)
        self._on_end(self)

    def _tenant_closing(self, code: Optional[int], reason: str) -> None:
        self.end(CloseCode.NORMAL_CLOSURE, f"websocket closed: {code} {reason}".strip())

    def _tenant_lost(self, exc: Optional[Exception]) -> None:
        self.end(CloseCode.NORMAL_CLOSURE, "tenant disconnected" if exc is None else f"tenant connection lost: {exc}")

    def _console_lost(self, exc: Optional[Exception]) -> None:
        if exc is not None:
            self.end(CloseCode.INTERNAL_ERROR, "connection to the console lost")
        elif self.to_client == 0 and time.monotonic() - self.started < REFUSED_WITHIN:
            # QEMU checks the client certificate after the TLS handshake and just closes (no alert).
            self.end(CloseCode.INTERNAL_ERROR, "the console refused the connection")
        else:
            self.end(CloseCode.NORMAL_CLOSURE, "the console closed")
