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


if __name__ == "__main__":
    unittest.main()
