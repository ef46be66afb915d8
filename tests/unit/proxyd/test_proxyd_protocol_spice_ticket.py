import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proxyd.protocol.spice_link import BadPublicKey, BadTicket, TicketKey, encrypt_ticket, ticket_plaintext

SPKI_RSA_1024_PREFIX = bytes.fromhex("30819f300d06092a864886f70d010101050003818d0030818902818100")


def test_the_public_key_is_a_162_byte_subject_public_key_info(proxy_key):
    assert len(proxy_key.public_der) == 162
    assert proxy_key.public_der.startswith(SPKI_RSA_1024_PREFIX)


def test_round_trip_strips_the_one_trailing_nul(proxy_key):
    ticket = encrypt_ticket(proxy_key.public_der, ticket_plaintext("token-ü"))
    assert len(ticket) == 128
    assert proxy_key.decrypt(ticket) == "token-ü"
    assert proxy_key.decrypt(encrypt_ticket(proxy_key.public_der, b"no-nul")) == "no-nul"


def test_passwords_are_checked_like_qemu_does():
    assert ticket_plaintext("x" * 60) == b"x" * 60 + b"\0"
    with pytest.raises(ValueError):
        ticket_plaintext("x" * 61)


def test_only_rsa_1024_keys():
    with pytest.raises(ValueError):
        TicketKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ValueError):
        TicketKey(rsa.generate_private_key(public_exponent=3, key_size=1024))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(BadPublicKey):
        encrypt_ticket(other.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), b"x\0")
    with pytest.raises(BadPublicKey):
        encrypt_ticket(bytes(162), b"x\0")


def test_a_ticket_of_the_wrong_size_is_bad(proxy_key):
    with pytest.raises(BadTicket):
        proxy_key.decrypt(b"\x01" * 127)
