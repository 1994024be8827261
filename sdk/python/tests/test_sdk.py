"""Unit tests of the Python SDK. The end-to-end test (tests/tests/python_node.rs) runs
these and then a Python node in real rounds beside Rust nodes."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
from blake3 import blake3
from safetensors.numpy import load, save

from blyan import crypto, light, merkle
from blyan.crypto import Keypair
from blyan.node import BaseModel, Item, ProtocolError, Work, encode_delta, expert_shapes

ROOT = Path(__file__).resolve().parents[3]


class GeneratedSchemas(unittest.TestCase):
    def test_the_generated_modules_are_those_of_the_schemas(self):
        with tempfile.TemporaryDirectory() as out:
            protos = sorted(str(p) for p in (ROOT / "schemas/proto/blyan/v1").glob("*.proto"))
            subprocess.run(
                [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'schemas/proto'}",
                 f"--python_out={out}", f"--pyi_out={out}", *protos],
                check=True,
            )
            generated = Path(out) / "blyan/v1"
            names = sorted(p.name for p in generated.iterdir())
            shipped = ROOT / "sdk/python/src/blyan/v1"
            self.assertEqual(names, sorted(p.name for p in shipped.iterdir() if p.name != "__init__.py"))
            _, mismatch, errors = filecmp.cmpfiles(generated, shipped, names, shallow=False)
            self.assertEqual((mismatch, errors), ([], []), "run scripts/gen-python-schemas.sh")


def tree(leaves: list[bytes]) -> bytes:
    """RFC 6962's recursive definition, independent of merkle.verify's loop."""
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return merkle.node_hash(tree(leaves[:split]), tree(leaves[split:]))


def path(leaves: list[bytes], index: int) -> list[bytes]:
    if len(leaves) == 1:
        return []
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    if index < split:
        return path(leaves[:split], index) + [tree(leaves[split:])]
    return path(leaves[split:], index - split) + [tree(leaves[:split])]


class Merkle(unittest.TestCase):
    def test_every_leaf_of_every_small_tree_verifies_and_nothing_else_does(self):
        for count in range(1, 34):
            leaves = [bytes([i]) * 32 for i in range(count)]
            root = tree(leaves)
            for index in range(count):
                proof = path(leaves, index)
                self.assertEqual(len(proof), merkle.path_len(index, count))
                self.assertTrue(merkle.verify(root, index, count, leaves[index], proof))
                self.assertFalse(merkle.verify(root, index, count, b"\xff" * 32, proof))
                self.assertFalse(merkle.verify(root, index, count, leaves[index], proof + [root]))
                if proof:
                    self.assertFalse(merkle.verify(root, index, count, leaves[index], proof[:-1]))
                    other = (index + 1) % count
                    self.assertFalse(merkle.verify(root, other, count, leaves[index], proof))
            self.assertFalse(merkle.verify(root, count, count, leaves[0], []))


class Keys(unittest.TestCase):
    def test_a_key_file_round_trips_and_a_mismatched_one_is_refused(self):
        with tempfile.TemporaryDirectory() as dir:
            key = Keypair.generate()
            file = os.path.join(dir, "key.json")
            key.save(file)
            self.assertEqual(os.stat(file).st_mode & 0o777, 0o600)
            self.assertEqual(Keypair.load(file), key)
            other = os.path.join(dir, "other.json")
            with open(other, "w") as out:
                json.dump({"public_key": Keypair.generate().public.hex(), "secret_key": key.secret.hex()}, out)
            with self.assertRaises(ValueError):
                Keypair.load(other)

    def test_a_signature_binds_its_domain_network_and_payload(self):
        key = Keypair.generate()
        signature = key.sign(crypto.COMMAND_DOMAIN, "ab", b"cdef")
        self.assertTrue(crypto.verify(key.public, crypto.COMMAND_DOMAIN, "ab", b"cdef", signature))
        # The network id is length-prefixed: ("a", "bcdef") is another message.
        self.assertFalse(crypto.verify(key.public, crypto.COMMAND_DOMAIN, "a", b"bcdef", signature))
        self.assertFalse(crypto.verify(key.public, crypto.CHECKPOINT_DOMAIN, "ab", b"cdef", signature))
        self.assertFalse(crypto.verify(key.public, crypto.COMMAND_DOMAIN, "ab", b"cdeg", signature))
        self.assertFalse(crypto.verify(Keypair.generate().public, crypto.COMMAND_DOMAIN, "ab", b"cdef", signature))

    def test_hex_has_one_spelling(self):
        self.assertEqual(crypto.unhex("00ff"), b"\x00\xff")
        for text in ("00FF", "0x00", "0", " 00"):
            with self.assertRaises(ValueError):
                crypto.unhex(text)
        with self.assertRaises(ValueError):
            crypto.unhex("00" * 31, 32)


def model(inputs=3, hidden=5, outputs=2, experts=3, seed=1) -> tuple[BaseModel, dict]:
    rng = np.random.default_rng(seed)
    weights = {
        "router.weight": rng.uniform(-0.5, 0.5, (experts, inputs)),
        "router.bias": rng.uniform(-0.5, 0.5, (experts,)),
    }
    for e in range(experts):
        for name, shape in expert_shapes(inputs, hidden, outputs, e).items():
            weights[name] = rng.uniform(-0.5, 0.5, shape)
    weights = {name: value.astype(np.float32) for name, value in weights.items()}
    shared = save({k: v for k, v in weights.items() if k.startswith("router.")})
    blobs = tuple(
        save({k: weights[k] for k in expert_shapes(inputs, hidden, outputs, e)}) for e in range(experts)
    )
    return BaseModel(inputs, hidden, outputs, experts, seed, shared, blobs), weights


def predict(weights: dict, experts: int, x: np.ndarray) -> np.ndarray:
    logits = x @ weights["router.weight"].T + weights["router.bias"]
    gates = np.exp(logits - logits.max(axis=1, keepdims=True))
    gates /= gates.sum(axis=1, keepdims=True)
    out = 0
    for e in range(experts):
        h = np.maximum(x @ weights[f"experts.{e}.fc1.weight"].T + weights[f"experts.{e}.fc1.bias"], 0)
        out = out + gates[:, [e]] * (h @ weights[f"experts.{e}.fc2.weight"].T + weights[f"experts.{e}.fc2.bias"])
    return out


class Deltas(unittest.TestCase):
    def work(self) -> tuple[Work, dict]:
        base, weights = model()
        _, teacher = model(seed=2)
        rng = np.random.default_rng(3)
        items = []
        for i in range(4):
            x = rng.uniform(-1, 1, (32, 3)).astype(np.float32)
            items.append(Item(i, save({"x": x, "y": predict(teacher, 3, x).astype(np.float32)})))
        return Work(round=7, expert=1, pool_id=1, base=base, items=tuple(items)), weights

    def test_a_delta_is_exactly_the_experts_four_f32_tensors(self):
        work, _ = self.work()
        shapes = work.delta_shapes
        good = {name: np.full(shape, 0.5) for name, shape in shapes.items()}
        tensors = load(encode_delta(work, good))
        self.assertEqual(sorted(tensors), sorted(shapes))
        for name, tensor in tensors.items():
            self.assertEqual((tensor.dtype, tensor.shape), (np.float32, shapes[name]))
        missing = dict(good)
        missing.pop("experts.1.fc2.bias")
        extra = dict(good, **{"experts.0.fc1.bias": np.zeros(5)})
        wrong_shape = dict(good, **{"experts.1.fc1.bias": np.zeros(4)})
        nan = dict(good, **{"experts.1.fc2.bias": np.array([0.0, np.nan])})
        for bad in (missing, extra, wrong_shape, nan):
            with self.assertRaises(ProtocolError):
                encode_delta(work, bad)

    def test_the_light_trainer_lowers_the_training_loss_of_its_expert_only(self):
        work, weights = self.work()
        x, y = work.xy()
        delta = light.train(work)
        self.assertEqual(sorted(delta), sorted(work.delta_shapes))
        trained = dict(weights)
        for name, change in delta.items():
            trained[name] = weights[name] + change
        before = np.mean((predict(weights, 3, x) - y) ** 2)
        after = np.mean((predict(trained, 3, x) - y) ** 2)
        self.assertLess(after, before * 0.9, (before, after))
        # The bytes a node uploads decode to the same change.
        decoded = load(encode_delta(work, delta))
        for name in delta:
            np.testing.assert_array_equal(decoded[name], delta[name])


class Commitment(unittest.TestCase):
    def test_the_commitment_and_salt_bind_every_input(self):
        key = Keypair.generate()
        delta_hash = blake3(b"delta").digest()
        salt = key.salt(3, delta_hash)
        self.assertEqual(salt, key.salt(3, delta_hash))
        self.assertNotEqual(salt, key.salt(4, delta_hash))
        commitment = crypto.commitment(3, key.public, delta_hash, salt)
        self.assertEqual(
            commitment,
            blake3(crypto.u64(3) + key.public + delta_hash + salt,
                   derive_key_context="blyan-ledger 2026-12 delta-commitment v1").digest(),
        )
        self.assertNotEqual(commitment, crypto.commitment(3, Keypair.generate().public, delta_hash, salt))



class Receipts(unittest.TestCase):
    """Receipts made here, for a round of two nodes with a checkpoint signed by a key of
    this test: every malformation is signed into the checkpoint, so only the decoding
    rules can refuse it."""

    NETWORK = "receipt-test"

    def build(self, mutate=lambda events: None) -> tuple[dict, bytes, dict]:
        from blyan.v1 import envelope_pb2, event_pb2, types_pb2

        operator, key, other = Keypair.generate(), Keypair.generate().public, Keypair.generate().public
        round_id, delta_hash, score, amount = 3, blake3(b"delta").digest(), 777, 123
        shards = [(key, 0, 4), (other, 4, 4)]
        shard_leaves = [
            crypto.derive_key(crypto.SHARD_LEAF_CONTEXT, crypto.u64(round_id), node, crypto.u64(start), crypto.u64(count))
            for node, start, count in shards
        ]
        scores = [score, 5]
        score_leaves = [
            crypto.derive_key(crypto.SCORE_LEAF_CONTEXT, crypto.u64(round_id), key, delta_hash, crypto.u64(score)),
            crypto.derive_key(crypto.SCORE_LEAF_CONTEXT, crypto.u64(round_id), other, bytes(32), crypto.u64(5)),
        ]
        payout_leaves = [
            crypto.derive_key(crypto.PAYOUT_LEAF_CONTEXT, crypto.u64(round_id), b"\x00", key, crypto.u128(amount)),
            crypto.derive_key(crypto.PAYOUT_LEAF_CONTEXT, crypto.u64(round_id), b"\x00", other, crypto.u128(1)),
        ]

        def policy(kind: int) -> event_pb2.ServerInput:
            return event_pb2.ServerInput(
                policy_result=event_pb2.PolicyResultInput(round=round_id, kind=kind, module_hash=bytes(32))
            )

        def u128(value: int) -> types_pb2.U128:
            return types_pb2.U128(hi=value >> 64, lo=value & (2**64 - 1))

        events = [
            event_pb2.Event(
                server_input=policy(1),
                assignments_made=event_pb2.AssignmentsMadeV1(
                    round=round_id, nodes=key + other, starts=[0, 4], counts=[4, 4], merkle_root=tree(shard_leaves)
                ),
            ),
            event_pb2.Event(
                cause=envelope_pb2.SignedCommand(body=b"c", signer=key, signature=bytes(64)),
                delta_revealed=event_pb2.DeltaRevealedV1(
                    round=round_id, node=key, delta_hash=delta_hash, salt=bytes(32), delta_bytes=9
                ),
            ),
            event_pb2.Event(
                server_input=policy(2),
                scores_recorded=event_pb2.ScoresRecordedV1(round=round_id, scores=scores, merkle_root=tree(score_leaves)),
            ),
            event_pb2.Event(
                server_input=policy(3),
                round_finalized=event_pb2.RoundFinalizedV1(
                    round=round_id,
                    nodes=[event_pb2.Payout(key=key, amount=u128(amount)), event_pb2.Payout(key=other, amount=u128(1))],
                    rewards_root=tree(payout_leaves),
                    accepted=delta_hash,
                    carried=u128(0),
                ),
            ),
        ]
        mutate(events)
        records, prev, hashes = [], bytes(32), []
        for seq, event in enumerate(events):
            body = event.SerializeToString()
            hashed = crypto.record_hash(prev, seq, 1_000 + seq, body)
            records.append({"seq": seq, "prev_hash": prev.hex(), "time_ms": 1_000 + seq, "body": body.hex()})
            hashes.append(hashed)
            prev = hashed
        for record in records:
            record["proof"] = [h.hex() for h in path(hashes, record["seq"])]
        root = tree(hashes)
        signature = operator.sign(crypto.CHECKPOINT_DOMAIN, self.NETWORK, crypto.u64(len(hashes)) + root)

        def leaf(leaves, index):
            return {"index": index, "count": len(leaves), "hashes": [h.hex() for h in path(leaves, index)]}

        answer = {
            "network_id": self.NETWORK,
            "round": round_id,
            "key": key.hex(),
            "checkpoint": {"tree_size": len(hashes), "merkle_root": root.hex(), "signature": signature.hex()},
            "records": records,
            "assignment": leaf(shard_leaves, 0),
            "score": leaf(score_leaves, 0),
            "payouts": [leaf(payout_leaves, 0)],
        }
        expected = {
            "round": round_id,
            "key": key.hex(),
            "tree_size": len(hashes),
            "ending": "finalized",
            "shard": {"node": key.hex(), "start": 0, "count": 4},
            "delta_hash": delta_hash.hex(),
            "score": score,
            "accepted": True,
            "node_reward": str(amount),
            "validator_reward": None,
        }
        return answer, operator.public, expected

    def refused(self, mutate) -> None:
        from blyan import receipt

        answer, operator, _ = self.build(mutate)
        with self.assertRaisesRegex(receipt.ReceiptError, "cannot be decoded"):
            receipt.verify(answer, operator)

    def test_a_well_formed_receipt_proves_its_claims_and_another_key_proves_nothing(self):
        from blyan import receipt

        answer, operator, expected = self.build()
        self.assertEqual(receipt.verify(answer, operator), expected)
        with self.assertRaises(receipt.ReceiptError):
            receipt.verify(answer, Keypair.generate().public)

    def test_every_malformed_event_is_refused_though_signed(self):
        def short_hash(events):
            events[1].delta_revealed.delta_hash = bytes(31)

        def two_causes(events):
            events[1].server_input.CopyFrom(events[0].server_input)

        def no_input_kind(events):
            events[2].server_input.Clear()
            events[2].server_input.SetInParent()

        def genesis_input(events):
            events[3].server_input.Clear()
            events[3].server_input.genesis.SetInParent()

        def no_amount(events):
            events[3].round_finalized.nodes[1].ClearField("amount")

        def no_carried(events):
            events[3].round_finalized.ClearField("carried")

        def long_accepted(events):
            events[3].round_finalized.accepted += b"\x00"

        def short_signer(events):
            events[1].cause.signer = bytes(5)

        def odd_nodes(events):
            events[0].assignments_made.nodes += b"\x00"

        for mutate in (short_hash, two_causes, no_input_kind, genesis_input, no_amount, no_carried,
                       long_accepted, short_signer, odd_nodes):
            with self.subTest(mutate.__name__):
                self.refused(mutate)

    def test_the_json_is_read_as_the_rust_sdk_reads_it(self):
        from blyan import receipt

        answer, operator, expected = self.build()
        text = json.dumps(answer)
        self.assertEqual(receipt.verify(receipt.loads(text), operator), expected)
        with self.assertRaises(receipt.ReceiptError):
            receipt.loads(text[:-1] + ', "round": 4}')
        with self.assertRaises(receipt.ReceiptError):
            receipt.verify(dict(answer, extra=1), operator)
        with self.assertRaises(receipt.ReceiptError):
            receipt.verify({k: v for k, v in answer.items() if k != "score"}, operator)
        with self.assertRaises(receipt.ReceiptError):
            receipt.verify({k: v for k, v in answer.items() if k != "payouts"}, operator)


if __name__ == "__main__":
    unittest.main()
