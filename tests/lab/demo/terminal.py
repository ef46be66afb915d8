"""``scripts/demo serial --ca FILE URL``: this terminal on a serial console, through proxyd's websocket.

Keys go to the guest as typed (the terminal in raw mode), the guest's bytes
go to the screen; Ctrl-] leaves, as in telnet and virsh console.
"""

from __future__ import annotations

import os
import sys
import termios
import threading
import tty
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from resolverd.tls import client_context

ESCAPE = b"\x1d"  # Ctrl-]


def attach(url: str, ca_cert: Path) -> int:
    """Relay until Ctrl-], end of input or the proxy closing the console; the exit status."""
    with connect(url, ssl=client_context(ca_cert), max_size=None, subprotocols=["binary"]) as ws:
        sys.stderr.write("Connected; Ctrl-] leaves.\r\n")
        sys.stderr.flush()
        leaving = threading.Event()
        threading.Thread(target=_to_screen, args=(ws, leaving), name="serial-to-screen", daemon=True).start()
        stdin = sys.stdin.fileno()
        if not os.isatty(stdin):
            return _from_keyboard(ws, stdin, leaving)
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        try:
            return _from_keyboard(ws, stdin, leaving)
        finally:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            sys.stderr.write("\n")


def _from_keyboard(ws: ClientConnection, stdin: int, leaving: threading.Event) -> int:
    while True:
        data = os.read(stdin, 1024)
        if not data or ESCAPE in data:
            leaving.set()
            data = data.split(ESCAPE)[0]
            if data:
                ws.send(data)
            return 0
        try:
            ws.send(data)
        except ConnectionClosed as closed:
            sys.stderr.write(f"\r\nThe console closed: {closed}\r\n")
            return 1


def _to_screen(ws: ClientConnection, leaving: threading.Event) -> None:
    out = sys.stdout.buffer
    try:
        for message in ws:
            out.write(message if isinstance(message, bytes) else message.encode())
            out.flush()
    except ConnectionClosed:
        pass
    if not leaving.is_set():
        sys.stderr.write("\r\nThe console closed; press a key.\r\n")
        sys.stderr.flush()
