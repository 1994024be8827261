"""Offline verification of a round receipt (PROTOCOL.md, "A round receipt").

``verify(receipt, checkpoint_key)`` checks the checkpoint's signature, every record's
hash and its inclusion in the checkpoint, and the assignment, score and payout proofs,
and returns what the receipt proves, in the same JSON shape as
``blyan --json receipt verify``. It needs no server: only the receipt and the
operator's public key, taken from a source you trust.
"""

from __future__ import annotations

import json
from typing import Any

from blake3 import blake3

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


def _fields(value: Any, names: set[str], what: str, optional: frozenset = frozenset()) -> dict:
    """Exactly ``names``, of which ``optional`` may be left out (then ``None``)."""
    if not isinstance(value, dict) or not names - optional <= set(value) <= names:
        raise ReceiptError(f"{what} must have exactly the fields {sorted(names)}")
    return {name: value.get(name) for name in names}


def loads(text: str | bytes) -> Any:
    """JSON as the Rust SDK reads a receipt: a repeated key is refused, not overwritten."""

    def unique(pairs: list) -> dict:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ReceiptError(f"a JSON object repeats a key: {sorted(keys)}")
        return dict(pairs)

    return json.loads(text, object_pairs_hook=unique)


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


def _decode(seq: int, body: bytes) -> Any:
    """The record's ``Event``, refused where the ledger's own decoder refuses it: one
    cause at most, a server input of a kind that fits its event, and every key, hash,
    root and amount of the receipt's kinds of event present at its length."""

    def bad(reason: str) -> ReceiptError:
        return ReceiptError(f"record {seq} cannot be decoded: {reason}")

    def exact(value: bytes, size: int, name: str) -> None:
        if len(value) != size:
            raise bad(f"{name} is {len(value)} bytes, not {size}")

    def packed(value: bytes, name: str) -> None:
        if len(value) % 32:
            raise bad(f"{name} is not a list of 32-byte values")

    def present(message: Any, field: str) -> None:
        if not message.HasField(field):
            raise bad(f"no {field}")

    try:
        event = event_pb2.Event.FromString(body)
    except Exception as error:  # protobuf raises its own DecodeError
        raise bad(str(error)) from None
    kind = event.WhichOneof("kind")
    if kind is None:
        raise bad("no event kind")
    if event.HasField("cause"):
        if event.HasField("server_input"):
            raise bad("an event has one cause: a command or a server input, not both")
        exact(event.cause.signer, 32, "signer")
        exact(event.cause.signature, 64, "signature")
    elif event.HasField("server_input"):
        given = event.server_input
        input_kind = given.WhichOneof("kind")
        if input_kind is None:
            raise bad("no server input kind")
        if input_kind == "genesis" and kind != "genesis_created":
            raise bad("a genesis input's event must be the genesis")
        if input_kind == "expert_update" and kind != "expert_updated":
            raise bad("an expert update input's event must be the update")
        if input_kind == "checkpoint":
            exact(given.checkpoint.merkle_root, 32, "merkle_root")
            exact(given.checkpoint.signature, 64, "signature")
        if input_kind == "policy_result":
            result = given.policy_result
            if result.kind not in (1, 2, 3):
                raise bad(f"plugin kind must be sharding (1), scoring (2) or reward (3), got {result.kind}")
            exact(result.module_hash, 32, "module_hash")
            if result.unstored_wasm and blake3(result.unstored_wasm).digest() != result.module_hash:
                raise bad("unstored_wasm does not hash to module_hash")
            for failure in result.failures:
                exact(failure.hash, 32, "failure hash")
    if kind == "assignments_made":
        made = event.assignments_made
        packed(made.nodes, "nodes")
        if not len(made.nodes) // 32 == len(made.starts) == len(made.counts):
            raise bad("an assignment's nodes, starts and counts differ in length")
        exact(made.merkle_root, 32, "merkle_root")
    elif kind == "delta_revealed":
        revealed = event.delta_revealed
        exact(revealed.node, 32, "node")
        exact(revealed.delta_hash, 32, "delta_hash")
        exact(revealed.salt, 32, "salt")
    elif kind == "scores_recorded":
        exact(event.scores_recorded.merkle_root, 32, "merkle_root")
    elif kind == "round_finalized":
        finalized = event.round_finalized
        for payout in finalized.nodes:
            exact(payout.key, 32, "payout key")
            present(payout, "amount")
        for outcome in finalized.validators:
            exact(outcome.validator, 32, "validator")
            present(outcome, "reward")
        exact(finalized.rewards_root, 32, "rewards_root")
        packed(finalized.accepted, "accepted")
        present(finalized, "carried")
    elif kind == "round_aborted":
        present(event.round_aborted, "carried")
    return event


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
    # The proofs that may not apply may be left out, as the Rust SDK reads them.
    receipt = _fields(receipt, _RECEIPT_FIELDS, "a receipt", frozenset({"assignment", "score"}))
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
        event = _decode(seq, body)
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
