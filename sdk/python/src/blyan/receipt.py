"""Offline verification of a round receipt (PROTOCOL.md, "A round receipt").

``verify(receipt, checkpoint_key)`` checks the checkpoint's signature, every record's
hash and its inclusion in the checkpoint, and the assignment, score and payout proofs,
and returns what the receipt proves, in the same JSON shape as
``blyan --json receipt verify``. It needs no server: only the receipt and the
operator's public key, taken from a source you trust.
"""

from __future__ import annotations

from typing import Any

from . import crypto, merkle
from .crypto import u64, u128, unhex
from .v1 import event_pb2

_RECEIPT_FIELDS = {
    "network_id",
    "round",
    "key",
    "checkpoint",
    "records",
    "assignment",
    "score",
    "payouts",
}


class ReceiptError(ValueError):
    """The receipt does not prove what it claims."""


def _fields(value: Any, names: set[str], what: str) -> dict:
    if not isinstance(value, dict) or set(value) != names:
        raise ReceiptError(f"{what} must have exactly the fields {sorted(names)}")
    return value


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise ReceiptError(f"{what} is not a u64")
    return value


def _hash(text: Any, what: str) -> bytes:
    try:
        return unhex(text, 32)
    except ValueError as error:
        raise ReceiptError(f"{what}: {error}") from None


def _amount(value: Any) -> int:
    """A protobuf ``U128``."""
    return value.hi << 64 | value.lo


def _keys(packed: bytes, what: str) -> list[bytes]:
    if len(packed) % 32:
        raise ReceiptError(f"{what} is not a list of 32-byte values")
    return [packed[i : i + 32] for i in range(0, len(packed), 32)]


class _Leaf:
    def __init__(self, value: Any, what: str):
        proof = _fields(value, {"index", "count", "hashes"}, what)
        self.what = what
        self.index = _uint(proof["index"], f"{what}.index")
        self.count = _uint(proof["count"], f"{what}.count")
        if not isinstance(proof["hashes"], list):
            raise ReceiptError(f"{what}.hashes is not a list")
        self.hashes = [_hash(h, f"{what}.hashes") for h in proof["hashes"]]

    def check(self, root: bytes, content: bytes) -> None:
        if not merkle.verify(root, self.index, self.count, content, self.hashes):
            raise ReceiptError(f"the {self.what} proof does not verify")


def verify(receipt: dict, checkpoint_key: bytes) -> dict:
    """What ``receipt`` proves, or ``ReceiptError`` for any altered byte."""
    _fields(receipt, _RECEIPT_FIELDS, "a receipt")
    network_id = receipt["network_id"]
    if not isinstance(network_id, str):
        raise ReceiptError("network_id is not text")
    round_id = _uint(receipt["round"], "round")
    key = _hash(receipt["key"], "key")
    checkpoint = _fields(
        receipt["checkpoint"], {"tree_size", "merkle_root", "signature"}, "the checkpoint"
    )
    tree_size = _uint(checkpoint["tree_size"], "tree_size")
    tree_root = _hash(checkpoint["merkle_root"], "merkle_root")
    try:
        signature = unhex(checkpoint["signature"], 64)
    except ValueError as error:
        raise ReceiptError(f"signature: {error}") from None
    if not crypto.verify(
        checkpoint_key,
        crypto.CHECKPOINT_DOMAIN,
        network_id,
        u64(tree_size) + tree_root,
        signature,
    ):
        raise ReceiptError("the checkpoint's signature does not verify under the given key")

    found: dict[str, Any] = {}

    def keep(name: str, value: Any) -> None:
        if name in found:
            raise ReceiptError(f"the receipt holds the round's {name} twice")
        found[name] = value

    if not isinstance(receipt["records"], list):
        raise ReceiptError("records is not a list")
    for record in receipt["records"]:
        record = _fields(record, {"seq", "prev_hash", "time_ms", "body", "proof"}, "a record")
        seq = _uint(record["seq"], "seq")
        try:
            body = unhex(record["body"])
        except ValueError as error:
            raise ReceiptError(f"record {seq}: {error}") from None
        content = crypto.record_hash(
            _hash(record["prev_hash"], "prev_hash"), seq, _uint(record["time_ms"], "time_ms"), body
        )
        if not isinstance(record["proof"], list):
            raise ReceiptError(f"record {seq}: proof is not a list")
        proof = [_hash(h, "proof") for h in record["proof"]]
        if seq >= tree_size or not merkle.verify(tree_root, seq, tree_size, content, proof):
            raise ReceiptError(f"record {seq} is not in the checkpoint's tree")
        try:
            event = event_pb2.Event.FromString(body)
        except Exception as error:  # protobuf raises its own DecodeError
            raise ReceiptError(f"record {seq} cannot be decoded: {error}") from None
        kind = event.WhichOneof("kind")
        if kind == "assignments_made" and event.assignments_made.round == round_id:
            keep("assignments", event.assignments_made)
        elif (
            kind == "delta_revealed"
            and event.delta_revealed.round == round_id
            and event.delta_revealed.node == key
        ):
            keep("reveal", event.delta_revealed)
        elif kind == "scores_recorded" and event.scores_recorded.round == round_id:
            keep("scores", event.scores_recorded)
        elif kind == "round_finalized" and event.round_finalized.round == round_id:
            keep("end", event.round_finalized)
        elif kind == "round_aborted" and event.round_aborted.round == round_id:
            keep("end", event.round_aborted)
        else:
            raise ReceiptError(f"record {seq} is not one of the round's events for this key")
    if "end" not in found:
        raise ReceiptError("the receipt holds no ending of the round")

    shard = None
    assignments = found.get("assignments")
    if assignments is None:
        if receipt["assignment"] is not None:
            raise ReceiptError("the receipt holds an assignment proof it does not need")
    else:
        if receipt["assignment"] is None:
            raise ReceiptError("the receipt lacks its assignment proof")
        proof = _Leaf(receipt["assignment"], "assignment")
        nodes = _keys(assignments.nodes, "the shards' nodes")
        if not len(nodes) == len(assignments.starts) == len(assignments.counts):
            raise ReceiptError("the assignments' columns differ in length")
        if proof.index >= len(nodes) or proof.count != len(nodes) or nodes[proof.index] != key:
            raise ReceiptError("the assignment proof does not verify")
        start, count = assignments.starts[proof.index], assignments.counts[proof.index]
        proof.check(
            assignments.merkle_root,
            crypto.derive_key(crypto.SHARD_LEAF_CONTEXT, u64(round_id), key, u64(start), u64(count)),
        )
        shard = {"node": key.hex(), "start": start, "count": count}

    reveal, scores = found.get("reveal"), found.get("scores")
    delta_hash = None if reveal is None else reveal.delta_hash
    score = None
    if reveal is not None and scores is not None:
        if receipt["score"] is None:
            raise ReceiptError("the receipt lacks its score proof")
        proof = _Leaf(receipt["score"], "score")
        if proof.index >= len(scores.scores) or proof.count != len(scores.scores):
            raise ReceiptError("the score proof does not verify")
        score = scores.scores[proof.index]
        proof.check(
            scores.merkle_root,
            crypto.derive_key(crypto.SCORE_LEAF_CONTEXT, u64(round_id), key, delta_hash, u64(score)),
        )
    elif receipt["score"] is not None:
        raise ReceiptError("the receipt holds a score proof it does not need")

    end = found["end"]
    if not isinstance(receipt["payouts"], list):
        raise ReceiptError("payouts is not a list")
    payouts = [_Leaf(p, "payout") for p in receipt["payouts"]]
    node_reward = validator_reward = None
    accepted = False
    if isinstance(end, event_pb2.RoundAbortedV1):
        if payouts:
            raise ReceiptError("the receipt holds a payout proof it does not need")
        ending: Any = {"aborted": {"reason": end.reason}}
    else:
        count = len(end.nodes) + len(end.validators)
        owed = []
        for position, payout in enumerate(end.nodes):
            if payout.key == key:
                node_reward = _amount(payout.amount)
                owed.append((position, b"\x00", node_reward))
                break
        for position, outcome in enumerate(end.validators):
            if outcome.validator == key:
                validator_reward = _amount(outcome.reward)
                owed.append((len(end.nodes) + position, b"\x01", validator_reward))
                break
        if len(payouts) != len(owed):
            raise ReceiptError(f"the receipt holds {len(payouts)} payout proofs, it owes {len(owed)}")
        for (index, payee, amount), proof in zip(owed, payouts):
            if proof.index != index or proof.count != count:
                raise ReceiptError("the payout proof does not verify")
            proof.check(
                end.rewards_root,
                crypto.derive_key(
                    crypto.PAYOUT_LEAF_CONTEXT, u64(round_id), payee, key, u128(amount)
                ),
            )
        accepted = delta_hash is not None and delta_hash in _keys(end.accepted, "accepted")
        ending = "finalized"
    return {
        "round": round_id,
        "key": key.hex(),
        "tree_size": tree_size,
        "ending": ending,
        "shard": shard,
        "delta_hash": None if delta_hash is None else delta_hash.hex(),
        "score": score,
        "accepted": accepted,
        "node_reward": None if node_reward is None else str(node_reward),
        "validator_reward": None if validator_reward is None else str(validator_reward),
    }
