"""The tenant's leg when it speaks a byte stream (native SPICE over TLS, or inside a CONNECT tunnel).

It offers what a session asks of a websocket leg, minus framing: there is
no close frame to send (closing is closing the connection) and no ping in
the protocol the proxy could use without parsing it, so ``ping`` does
nothing and ``ping_sent`` stays None.
"""

import time
from typing import Callable, Optional

from proxyd.relay import ConsoleLeg


class StreamLeg(ConsoleLeg):
    def __init__(self) -> None:
        super().__init__()
        self.last_activity = time.monotonic()
        self.ping_sent: Optional[float] = None
        self.on_closing: Callable[[Optional[int], str], None] = lambda code, reason: None

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        super().data_received(data)

    def ping(self) -> None:
        """Nothing to send: SPICE's own pings are QEMU's."""

    def close_with(self, code: int, reason: str) -> None:
        self.close()
