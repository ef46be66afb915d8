"""VNC Authentication's challenge response (RFC 6143 7.2.2).

The key is the password cut or NUL-padded to 8 bytes with the bits of every
byte reversed (the historical VNC quirk); the 16-byte challenge is encrypted
with single DES in ECB mode.  Single DES is TripleDES with the key repeated
three times, the only form newer ``cryptography`` releases still accept.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, modes

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # cryptography < 43 has it among the primitives only
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore[no-redef]

CHALLENGE_LENGTH = 16
_BIT_REVERSED = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


def vnc_auth_response(challenge: bytes, password: bytes) -> bytes:
    if len(challenge) != CHALLENGE_LENGTH:
        raise ValueError(f"a VNC challenge is {CHALLENGE_LENGTH} bytes, not {len(challenge)}")
    key = password[:8].ljust(8, b"\0").translate(_BIT_REVERSED)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()
