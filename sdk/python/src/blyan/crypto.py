"""Keys, signatures and the derived hashes of the protocol (PROTOCOL.md).

Every hash is BLAKE3; every signature is ed25519 over a domain, the length-prefixed
network id and a payload. Verification is libsodium's (through PyNaCl). Like the
ledger's ``verify_strict`` it refuses a non-canonical ``S`` and small-order ``R`` and key
points; it also refuses non-canonical encodings of a public key, which no honest key
has and ``verify_strict`` accepts.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from blake3 import blake3
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

COMMAND_DOMAIN = b"blyan-ledger/command/v1"
CHECKPOINT_DOMAIN = b"blyan-ledger/checkpoint/v1"
RECORD_CONTEXT = "blyan-ledger 2026-11 event-record v1"
COMMITMENT_CONTEXT = "blyan-ledger 2026-12 delta-commitment v1"
SHARD_LEAF_CONTEXT = "blyan-ledger 2026-12 shard v1"
SCORE_LEAF_CONTEXT = "blyan-ledger 2026-12 score v1"
PAYOUT_LEAF_CONTEXT = "blyan-ledger 2026-12 payout v1"
# The SDKs' own salt: the server does not check how a salt is made, but this one lets
# a node that restarts mid-round commit the same bytes again, as the Rust SDK's does.
SALT_CONTEXT = "blyan-sdk 2026-12 delta-salt v1"

_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def u128(value: int) -> bytes:
    return value.to_bytes(16, "big")


def derive_key(context: str, *material: bytes) -> bytes:
    """BLAKE3's key-derivation mode over the concatenated ``material``."""
    hasher = blake3(derive_key_context=context)
    for part in material:
        hasher.update(part)
    return hasher.digest()


def unhex(text: str, size: int | None = None) -> bytes:
    """Lower-case hex only, as the ledger writes it, so every value has one spelling."""
    if not isinstance(text, str) or not _HEX.fullmatch(text):
        raise ValueError(f"{text!r} is not lower-case hex")
    value = bytes.fromhex(text)
    if size is not None and len(value) != size:
        raise ValueError(f"{text!r} is {len(value)} bytes, not {size}")
    return value


def signed_message(domain: bytes, network_id: str, payload: bytes) -> bytes:
    network = network_id.encode()
    return domain + len(network).to_bytes(4, "big") + network + payload


def verify(public: bytes, domain: bytes, network_id: str, payload: bytes, signature: bytes) -> bool:
    if len(public) != 32 or len(signature) != 64:
        return False
    try:
        VerifyKey(public).verify(signed_message(domain, network_id, payload), signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def record_hash(prev_hash: bytes, seq: int, time_ms: int, body: bytes) -> bytes:
    """The hash of a log record, over its body exactly as stored."""
    return derive_key(RECORD_CONTEXT, prev_hash, u64(seq), u64(time_ms), body)


def commitment(round_id: int, node: bytes, delta_hash: bytes, salt: bytes) -> bytes:
    return derive_key(COMMITMENT_CONTEXT, u64(round_id), node, delta_hash, salt)


@dataclass(frozen=True)
class Keypair:
    """An ed25519 key: ``secret`` is the 32-byte seed."""

    secret: bytes

    @classmethod
    def generate(cls) -> Keypair:
        return cls(os.urandom(32))

    @classmethod
    def load(cls, path: str) -> Keypair:
        """A key file: JSON ``{"public_key": hex, "secret_key": hex}``."""
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        key = cls(unhex(data["secret_key"], 32))
        if key.public != unhex(data["public_key"], 32):
            raise ValueError(f"{path}: the public key is not the secret key's")
        return key

    def save(self, path: str) -> None:
        """Writes the key file, readable by its owner only."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"public_key": self.public.hex(), "secret_key": self.secret.hex()}, file)

    @property
    def public(self) -> bytes:
        return bytes(SigningKey(self.secret).verify_key)

    def sign(self, domain: bytes, network_id: str, payload: bytes) -> bytes:
        return SigningKey(self.secret).sign(signed_message(domain, network_id, payload)).signature

    def salt(self, round_id: int, delta_hash: bytes) -> bytes:
        """The salt of this key's commitment to ``delta_hash`` in ``round_id``."""
        return derive_key(SALT_CONTEXT, self.secret, u64(round_id), delta_hash)
