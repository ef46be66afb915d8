import struct

import pytest

from proxyd.protocol.errors import MalformedMessage, Oversized
from proxyd.protocol.spice_main import (
    MAX_INSPECTED_SIZE,
    MainChannelFilter,
    MainInit,
    MigrateMessage,
    PassThrough,
    with_session_id,
)

INIT_BODY = struct.pack("<8I", 0x1EE7C0DE, 1, 3, 2, 1, 10, 123456, 0x4000000)
INIT_FIELDS = dict(session_id=0x1EE7C0DE, display_channels_hint=1, supported_mouse_modes=3, current_mouse_mode=2,
                   agent_connected=1, agent_tokens=10, multi_media_time=123456, ram_hint=0x4000000)
CHANNELS_LIST_BODY = struct.pack("<I", 2) + bytes([2, 0, 3, 0])
SWITCH_HOST_BODY = struct.pack("<HHIIII", 5900, 5901, 10, 20, 0, 0) + b"evil.host\0"


def mini(msg_type: int, body: bytes) -> bytes:
    return struct.pack("<HI", msg_type, len(body)) + body


def full(serial: int, msg_type: int, body: bytes) -> bytes:
    return struct.pack("<QHII", serial, msg_type, len(body), 0) + body


def run(channel_filter, chunks):
    """(the bytes passed through, the other events in order)."""
    passed, others = b"", []
    for chunk in chunks:
        for event in channel_filter.receive_data(chunk):
            if isinstance(event, PassThrough):
                passed += event.data
            else:
                others.append(event)
    return passed, others


def test_main_init_in_mini_header_mode_and_everything_else_passes(chunkings):
    init = mini(103, INIT_BODY)
    stream = init + mini(104, CHANNELS_LIST_BODY) + mini(111, SWITCH_HOST_BODY) + mini(105, b"") + mini(107, b"")
    assert len(init) == 38 and init[6:10] == struct.pack("<I", 0x1EE7C0DE)
    for chunks in chunkings(stream):
        passed, others = run(MainChannelFilter(mini_header=True), chunks)
        assert others == [MainInit(**INIT_FIELDS, raw=init), MigrateMessage(111, mini(111, SWITCH_HOST_BODY))]
        assert passed == mini(104, CHANNELS_LIST_BODY) + mini(105, b"") + mini(107, b"")


def test_main_init_in_full_header_mode(chunkings):
    set_ack = full(1, 3, struct.pack("<II", 1, 20))
    init = full(2, 103, INIT_BODY)
    begin = full(3, 101, SWITCH_HOST_BODY)
    seamless = full(4, 116, SWITCH_HOST_BODY + struct.pack("<I", 1))
    stream = set_ack + init + full(5, 104, CHANNELS_LIST_BODY) + begin + seamless
    for chunks in chunkings(stream):
        passed, others = run(MainChannelFilter(mini_header=False), chunks)
        assert others == [MainInit(**INIT_FIELDS, raw=init), MigrateMessage(101, begin), MigrateMessage(116, seamless)]
        assert passed == set_ack + full(5, 104, CHANNELS_LIST_BODY)


def test_pass_through_bytes_come_out_before_their_message_ends():
    channel_filter = MainChannelFilter(mini_header=True)
    agent_data = mini(109, bytes(2048))
    assert channel_filter.receive_data(agent_data[:6]) == [PassThrough(agent_data[:6])]
    assert channel_filter.receive_data(agent_data[6:100]) == [PassThrough(agent_data[6:100])]
    assert channel_filter.buffered_bytes == 0


def test_order_is_kept_around_an_inspected_message():
    channel_filter = MainChannelFilter(mini_header=True)
    before, init, after = mini(106, b"\x01\x00\x00\x00"), mini(103, INIT_BODY), mini(104, CHANNELS_LIST_BODY)
    assert channel_filter.receive_data(before + init + after) == [
        PassThrough(before), MainInit(**INIT_FIELDS, raw=init), PassThrough(after)]


def test_a_longer_main_init_from_a_newer_server_is_read():
    body = INIT_BODY + b"future"
    (event,) = MainChannelFilter(mini_header=True).receive_data(mini(103, body))
    assert event.session_id == 0x1EE7C0DE and event.raw == mini(103, body)


def test_a_short_main_init_is_malformed():
    with pytest.raises(MalformedMessage):
        MainChannelFilter(mini_header=True).receive_data(mini(103, INIT_BODY[:31]))


def test_inspected_messages_are_bounded_before_buffering():
    channel_filter = MainChannelFilter(mini_header=True)
    with pytest.raises(Oversized):
        channel_filter.receive_data(struct.pack("<HI", 111, MAX_INSPECTED_SIZE + 1))
    channel_filter = MainChannelFilter(mini_header=False)
    with pytest.raises(Oversized):
        channel_filter.receive_data(struct.pack("<QHII", 1, 103, 0xFFFFFFFF, 0))


def test_a_huge_message_that_is_not_inspected_is_streamed():
    channel_filter = MainChannelFilter(mini_header=True)
    header = struct.pack("<HI", 109, 0xFFFFFFFF)
    assert channel_filter.receive_data(header + bytes(1000)) == [PassThrough(header + bytes(1000))]
    assert channel_filter.buffered_bytes == 0


def test_session_id_rewritten_byte_for_byte_in_both_header_modes():
    init_mini = MainInit(**INIT_FIELDS, raw=mini(103, INIT_BODY))
    assert with_session_id(init_mini, 0xA1B2C3D4, mini_header=True) == \
        b"\x67\x00\x20\x00\x00\x00" + b"\xd4\xc3\xb2\xa1" + INIT_BODY[4:]
    init_full = MainInit(**INIT_FIELDS, raw=full(7, 103, INIT_BODY))
    assert with_session_id(init_full, 1, mini_header=False) == full(7, 103, struct.pack("<I", 1) + INIT_BODY[4:])
