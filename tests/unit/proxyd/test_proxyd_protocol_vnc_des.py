import pytest

from proxyd.protocol.rfb.vnc_des import vnc_auth_response

TEXTBOOK_KEY = bytes.fromhex("133457799BBCDFF1")  # the classic DES worked example
TEXTBOOK_PLAIN = bytes.fromhex("0123456789ABCDEF")
TEXTBOOK_CIPHER = bytes.fromhex("85E813540F0AB405")


def reverse_bits(data: bytes) -> bytes:
    return bytes(int(f"{byte:08b}"[::-1], 2) for byte in data)


def test_des_with_the_bits_of_each_password_byte_reversed():
    password = reverse_bits(TEXTBOOK_KEY)
    assert password == bytes.fromhex("C82CEA9ED93DFB8F")
    assert vnc_auth_response(TEXTBOOK_PLAIN * 2, password) == TEXTBOOK_CIPHER * 2


def test_each_half_of_the_challenge_is_encrypted_on_its_own():
    challenge = bytes(range(16))
    response = vnc_auth_response(challenge, b"secret")
    assert response[:8] == vnc_auth_response(challenge[:8] * 2, b"secret")[:8]
    assert response[8:] == vnc_auth_response(challenge[8:] * 2, b"secret")[8:]


def test_passwords_are_cut_to_eight_bytes_and_padded_with_nul():
    challenge = bytes(range(100, 116))
    assert vnc_auth_response(challenge, b"abcdefghXYZ") == vnc_auth_response(challenge, b"abcdefgh")
    assert vnc_auth_response(challenge, b"ab") == vnc_auth_response(challenge, b"ab\0\0\0\0\0\0")
    assert vnc_auth_response(challenge, b"ab") != vnc_auth_response(challenge, b"ac")


def test_a_challenge_is_sixteen_bytes():
    with pytest.raises(ValueError):
        vnc_auth_response(b"short", b"pw")
