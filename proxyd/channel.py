"""The local link between the master and one worker: JSON messages over a SEQPACKET socket pair.

SEQPACKET keeps message boundaries, so one ``send`` is one message and a
reader never sees half of one.  Every message is an object with a ``kind``:
``metrics`` (worker -> master, a proxyd.metrics snapshot), the SPICE
session table's requests and answers (``spice-*``, see proxyd.spice_sessions),
and the failed-token brake's reports and bars (``brake-*``, see proxyd.brake).
"""

import json
import logging
import socket
from typing import Any, Dict, Optional, Tuple

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024

Message = Dict[str, Any]


class ChannelClosed(Exception):
    """The other end is gone."""


def pair() -> Tuple[socket.socket, socket.socket]:
    """(master end, worker end), both non-blocking and close-on-exec."""
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (master_end, worker_end):
        end.setblocking(False)
    return master_end, worker_end


def send(sock: socket.socket, message: Message) -> bool:
    """Send without blocking; False when the message was dropped (the peer is slow or gone)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes is over the channel's {MAX_MESSAGE}")
    try:
        sock.send(data)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as exc:
        log.debug("channel send failed: %s", exc)
        return False
    return True


def receive(sock: socket.socket) -> Optional[Message]:
    """The next message; None when nothing is waiting or it was not a JSON object with a kind."""
    try:
        data = sock.recv(MAX_MESSAGE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        raise ChannelClosed(str(exc)) from exc
    if not data:
        raise ChannelClosed("end of channel")
    try:
        message = json.loads(data)
    except ValueError:
        log.warning("dropping a channel message that is not JSON")
        return None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        log.warning("dropping a channel message without a kind")
        return None
    return message
