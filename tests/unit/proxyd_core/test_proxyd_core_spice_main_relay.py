import struct

from proxyd.spice import MainRelay

INIT_BODY = struct.pack("<8I", 1804289383, 1, 3, 2, 1, 10, 123456, 0x4000000)
SWITCH_HOST_BODY = struct.pack("<HHIIII", 5900, 5901, 10, 20, 0, 0) + b"evil.host\0"


def mini(msg_type: int, body: bytes) -> bytes:
    return struct.pack("<HI", msg_type, len(body)) + body


def test_main_init_carries_the_proxys_session_id_and_migration_messages_never_reach_the_client():
    sent: list = []
    relay = MainRelay(sent.append, mini_header=True, where="qemu:5901")
    relay.feed(mini(3, b"\x01\x00\x00\x00\x14\x00\x00\x00") + mini(103, INIT_BODY)[:20])
    assert b"".join(sent) == mini(3, b"\x01\x00\x00\x00\x14\x00\x00\x00")  # SET_ACK goes at once
    relay.feed(mini(103, INIT_BODY)[20:] + mini(104, b"\x00\x00\x00\x00") + mini(111, SWITCH_HOST_BODY))
    assert relay.init is not None and relay.init.session_id == 1804289383
    assert len(sent) == 1  # the rest waits for the session id
    relay.start(0xA1B2C3D4)
    relay.feed(mini(101, SWITCH_HOST_BODY) + mini(116, SWITCH_HOST_BODY + b"\x01\x00\x00\x00") + mini(105, b""))
    assert b"".join(sent) == (mini(3, b"\x01\x00\x00\x00\x14\x00\x00\x00")
                              + mini(103, struct.pack("<I", 0xA1B2C3D4) + INIT_BODY[4:])
                              + mini(104, b"\x00\x00\x00\x00") + mini(105, b""))


def test_an_oversized_migration_message_breaks_the_session_instead_of_the_worker():
    broken: list = []
    relay = MainRelay([].append, mini_header=True, where="qemu:5901")
    relay.on_broken = broken.append
    relay.feed(struct.pack("<HI", 111, 1 << 20))
    assert broken == ["unreadable main channel message: oversized"]
