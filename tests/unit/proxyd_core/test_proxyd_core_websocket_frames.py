"""The tenant leg's own binary frames: byte for byte what the websockets library would send, at every length."""

import pytest
from websockets.frames import Frame, Opcode

from proxyd.websocket import binary_header


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000, 1 << 20])
def test_binary_header_matches_the_library(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert binary_header(size) + payload == Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
