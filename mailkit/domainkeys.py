"""DKIM keys and signatures (RFC 6376, RFC 8463 for Ed25519), on top of dkimpy.

Key generation uses ``cryptography``; canonicalisation, hashing and signing are dkimpy's. This
module knows nothing of where keys are stored: callers hand it the private key as text.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


class Algorithm(StrEnum):
    RSA = "rsa"  # rsa-sha256 with a 2048-bit key: what every verifier understands
    ED25519 = "ed25519"  # ed25519-sha256 (RFC 8463): short keys, not yet checked everywhere


SIGNATURE_ALGORITHMS = {Algorithm.RSA: b"rsa-sha256", Algorithm.ED25519: b"ed25519-sha256"}
RSA_BITS = 2048

# Headers to sign. From is required; Sender is here because the domain path adds it for foreign
# From addresses and the signature's d= is aligned with it. A header named here but absent is
# signed as absent, so nobody can add it later without breaking the signature.
SIGNED_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "in-reply-to",
    "references",
)


@dataclass(frozen=True)
class KeyPair:
    private_key: str  # RSA: PKCS#1 PEM; Ed25519: the base64 seed (the form dkimpy reads)
    public_key: str  # base64, the p= value of the DNS record


def generate(algorithm: Algorithm) -> KeyPair:
    """A new key pair for ``algorithm``."""
    if algorithm is Algorithm.RSA:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        private = rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, which dkimpy parses
            serialization.NoEncryption(),
        ).decode()
        public = rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return KeyPair(private, base64.b64encode(public).decode())
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return KeyPair(base64.b64encode(seed).decode(), base64.b64encode(public).decode())


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def record_text(algorithm: Algorithm, public_key: str) -> str:
    """The TXT record to publish at ``record_name``."""
    return f"v=DKIM1; k={algorithm.value}; p={public_key}"


def zone_file_text(text: str) -> str:
    """``text`` as quoted character-strings of at most 255 bytes (RFC 1035 3.3), the way a zone
    file or a DNS provider's form wants a 2048-bit RSA record: receivers join them again."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def parse_record(text: str) -> dict[str, str]:
    """Tags of a DKIM key record (RFC 6376 3.6.1); whitespace inside values is dropped."""
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    return tags


def published_key_matches(records: tuple[str, ...], algorithm: Algorithm, public_key: str) -> bool:
    """Whether exactly one record is published and it carries this key (RFC 6376 3.6.2.2: with
    several records a verifier may pick any, so two are ambiguous)."""
    if len(records) != 1:
        return False
    tags = parse_record(records[0])
    return (
        tags.get("v", "DKIM1") == "DKIM1"
        and tags.get("k", "rsa").lower() == algorithm.value
        and tags.get("p") == public_key
    )


def sign(
    message: bytes, *, domain: str, selector: str, algorithm: Algorithm, private_key: str
) -> bytes:
    """Return ``message`` with a DKIM-Signature header for ``domain`` prepended."""
    header = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        private_key.encode(),
        canonicalize=(b"relaxed", b"relaxed"),  # survives relays that refold headers
        signature_algorithm=SIGNATURE_ALGORITHMS[algorithm],
        include_headers=[h.encode() for h in SIGNED_HEADERS],
    )
    return header + message
