"""The Merkle trees of the log and of the rounds: RFC 6962 shape and prefixes, BLAKE3."""

from __future__ import annotations

from blake3 import blake3


def leaf_hash(content: bytes) -> bytes:
    return blake3(b"\x00" + content).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return blake3(b"\x01" + left + right).digest()


def path_len(index: int, count: int) -> int:
    """The length of leaf ``index``'s audit path in a tree of ``count`` leaves."""
    length = 0
    while count > 1:
        split = 1 << ((count - 1).bit_length() - 1)
        if index < split:
            count = split
        else:
            index -= split
            count -= split
        length += 1
    return length


def verify(root: bytes, index: int, count: int, content: bytes, proof: list[bytes]) -> bool:
    """Whether ``content`` is leaf ``index`` of ``count`` under ``root`` (RFC 9162 §2.1.3.2)."""
    if index >= count or len(proof) != path_len(index, count):
        return False
    fn, sn, hashed = index, count - 1, leaf_hash(content)
    for sibling in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            hashed = node_hash(sibling, hashed)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            hashed = node_hash(hashed, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hashed == root
