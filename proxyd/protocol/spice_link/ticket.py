"""The SPICE ticket: a password RSA-OAEP encrypted to the server's 1024-bit key.

OpenSSL's RSA_PKCS1_OAEP_PADDING is OAEP with SHA-1, MGF1-SHA-1 and no label.
Clients encrypt the password with its terminating NUL (spice-gtk: strlen+1
bytes; spice-html5: password + "\\0"), so a missing password is one byte.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from .constants import MAX_PASSWORD_LENGTH, PUBKEY_SIZE, TICKET_SIZE
from .errors import BadPublicKey, BadTicket

KEY_BITS = TICKET_SIZE * 8
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


class TicketKey:
    """The proxy's own RSA-1024 key pair, whose public half goes into SpiceLinkReply."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if private_key.key_size != KEY_BITS:
            raise ValueError(f"a SPICE ticket key has {KEY_BITS} bits, not {private_key.key_size}")
        self._private_key = private_key
        self.public_der = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if len(self.public_der) != PUBKEY_SIZE:
            raise ValueError(f"public key encodes to {len(self.public_der)} bytes, not {PUBKEY_SIZE}")

    @classmethod
    def generate(cls) -> TicketKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS))

    def decrypt(self, ticket: bytes) -> str:
        """The password in ``ticket``, without its terminating NUL."""
        try:
            plain = self._private_key.decrypt(ticket, _OAEP)
        except ValueError:
            raise BadTicket("ticket does not decrypt with the proxy's key") from None
        if plain.endswith(b"\0"):
            plain = plain[:-1]
        if b"\0" in plain:
            raise BadTicket("ticket holds a NUL inside the password")
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise BadTicket("ticket password is not UTF-8") from None


def ticket_plaintext(password: str) -> bytes:
    """The bytes to encrypt; raises ValueError for a password QEMU could never hold."""
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_LENGTH or b"\0" in data:
        raise ValueError(f"a SPICE password is at most {MAX_PASSWORD_LENGTH} bytes without NUL")
    return data + b"\0"


def encrypt_ticket(public_der: bytes, plaintext: bytes) -> bytes:
    """``plaintext`` (from ``ticket_plaintext``) encrypted to a server's SpiceLinkReply key."""
    try:
        key = load_der_public_key(public_der)
    except (ValueError, UnsupportedAlgorithm):
        raise BadPublicKey("server's public key is not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != KEY_BITS:
        raise BadPublicKey(f"server's public key is not RSA-{KEY_BITS}")
    return key.encrypt(plaintext, _OAEP)
