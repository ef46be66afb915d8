import pytest

from proxyd.protocol.spice_link import (
    HeaderModeMismatch,
    LinkError,
    LinkMess,
    LinkReply,
    mirror_reply_caps,
    relay_header_mode,
    reply_first_caps,
    to_backend,
)

GTK_MAIN = LinkMess(0, 1, 0, (0b1001,), (0b1111,))      # AUTH_SELECTION|MINI_HEADER
OLD_CLIENT = LinkMess(0, 1, 0, (0b0001,), ())           # no mini header
QEMU = LinkReply(LinkError.OK, bytes(162), (0b1011,), (0b1001,))
OLD_QEMU = LinkReply(LinkError.OK, bytes(162), (0b0011,), ())


def test_backend_first_mirrors_qemus_caps():
    assert mirror_reply_caps(GTK_MAIN, QEMU) == ((0b1011,), (0b1001,))
    assert relay_header_mode(GTK_MAIN, GTK_MAIN, (0b1011,), QEMU) is True


def test_a_client_without_mini_header_gets_none_announced():
    common, channel = mirror_reply_caps(OLD_CLIENT, QEMU)
    assert common == (0b0011,) and channel == (0b1001,)
    assert relay_header_mode(OLD_CLIENT, OLD_CLIENT, common, QEMU) is False


def test_reply_first_claims_nothing_of_the_hypervisors():
    assert reply_first_caps(GTK_MAIN) == ((0b1000,), ())
    assert reply_first_caps(OLD_CLIENT) == ((), ())


def test_reply_first_towards_a_qemu_without_mini_header_cannot_be_relayed():
    common, _ = reply_first_caps(GTK_MAIN)
    with pytest.raises(HeaderModeMismatch) as caught:
        relay_header_mode(GTK_MAIN, GTK_MAIN, common, OLD_QEMU)
    assert caught.value.reason == "header-mode-mismatch"


def test_legs_announcing_different_modes_cannot_be_relayed():
    with pytest.raises(HeaderModeMismatch):
        relay_header_mode(GTK_MAIN, OLD_CLIENT, (0b1011,), QEMU)
    with pytest.raises(HeaderModeMismatch):
        relay_header_mode(GTK_MAIN, GTK_MAIN, (0b0011,), QEMU)


def test_to_backend_takes_qemus_session_id_and_drops_the_migration_caps_of_main():
    assert to_backend(GTK_MAIN, 0) == LinkMess(0, 1, 0, (0b1001,), (0b0110,))
    assert to_backend(GTK_MAIN, 0).encode()[34:42] == bytes([0b1001, 0, 0, 0, 0b0110, 0, 0, 0])


def test_to_backend_keeps_every_cap_of_other_channels():
    display = LinkMess(0x1EE7, 2, 1, (0b1001,), (0b1111, 0x1))
    assert to_backend(display, 0x0BAD) == LinkMess(0x0BAD, 2, 1, (0b1001,), (0b1111, 0x1))


def test_to_backend_always_offers_qemu_auth_selection_and_never_sasl():
    old_sasl_client = LinkMess(0, 3, 0, (0b1100,), (0b1,))  # SASL|MINI_HEADER, no auth selection
    assert to_backend(old_sasl_client, 7) == LinkMess(7, 3, 0, (0b1001,), (0b1,))
