"""A GPU node's side of the protocol, for trainers written in Python.

``Node`` registers, heartbeats, fetches its shard of a round (every item checked against
its size and checksum, the shard's proof against the assignments root) and the round's
base model (every blob checked against the hash the log names), hands both to a trainer
callback, writes the returned delta as safetensors in exactly the layout the candle
validators measure, uploads it, commits, reveals once the reveal phase starts, and
fetches and verifies its receipt. ``Node.follow`` does each step when its event arrives
on the log's WebSocket.

A trainer is a function ``trainer(work: Work) -> dict[str, numpy.ndarray]``: the change
to each of the round's expert's four tensors (``Work.delta_shapes``), new weights minus
the base.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from blake3 import blake3
from google.protobuf.message import DecodeError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from . import crypto, merkle, receipt
from .client import ApiError, Client
from .crypto import Keypair, u64, unhex
from .v1 import command_pb2, envelope_pb2, event_pb2, types_pb2


class ProtocolError(Exception):
    """A step of a round failed: a bad item, proof, model or delta, or a refusal."""


def expert_shapes(inputs: int, hidden: int, outputs: int, expert: int) -> dict[str, tuple]:
    """The names and shapes of one expert's tensors: what a delta holds."""
    prefix = f"experts.{expert}"
    return {
        f"{prefix}.fc1.weight": (hidden, inputs),
        f"{prefix}.fc1.bias": (hidden,),
        f"{prefix}.fc2.weight": (outputs, hidden),
        f"{prefix}.fc2.bias": (outputs,),
    }


@dataclass(frozen=True)
class Item:
    """One checked item of a pool: an ``x`` (``[samples, inputs]``) and a ``y``
    (``[samples, outputs]``) f32 tensor as safetensors."""

    id: int
    data: bytes

    def tensors(self) -> dict[str, np.ndarray]:
        return load_safetensors(self.data)


@dataclass(frozen=True)
class BaseModel:
    """The model a round trains from: the router's weights and the version of every
    expert the round pinned, each blob checked against the hash the log names."""

    inputs: int
    hidden: int
    outputs: int
    experts: int
    seed: int
    shared: bytes
    expert_blobs: tuple[bytes, ...]

    def weights(self) -> dict[str, np.ndarray]:
        """Every tensor, by name: ``router.weight``, ``router.bias`` and
        ``experts.{e}.fc{1,2}.{weight,bias}``."""
        tensors = dict(load_safetensors(self.shared))
        for blob in self.expert_blobs:
            tensors.update(load_safetensors(blob))
        return tensors


@dataclass(frozen=True)
class Work:
    """A node's work in a round: the round's expert, the model it trains from (``None``
    when the genesis names no model) and its checked training items."""

    round: int
    expert: int
    pool_id: int
    base: BaseModel | None
    items: tuple[Item, ...]

    @property
    def delta_shapes(self) -> dict[str, tuple]:
        if self.base is None:
            raise ProtocolError("the ledger names no model, so a delta has no layout")
        b = self.base
        return expert_shapes(b.inputs, b.hidden, b.outputs, self.expert)

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item's ``x`` and ``y``, stacked."""
        xs, ys = [], []
        for item in self.items:
            tensors = item.tensors()
            if "x" not in tensors or "y" not in tensors:
                raise ProtocolError(f"item {item.id} lacks x or y")
            xs.append(tensors["x"])
            ys.append(tensors["y"])
        return np.concatenate(xs), np.concatenate(ys)


def encode_delta(work: Work, delta: dict[str, np.ndarray]) -> bytes:
    """The delta as the validators read it: exactly the expert's four tensors, each of
    its shape, f32, every value finite, as safetensors."""
    shapes = work.delta_shapes
    if set(delta) != set(shapes):
        raise ProtocolError(f"a delta holds exactly {sorted(shapes)}, not {sorted(delta)}")
    tensors = {}
    for name, shape in shapes.items():
        value = np.asarray(delta[name])
        if value.shape != shape:
            raise ProtocolError(f"{name} is {value.shape}, expected {shape}")
        value = np.ascontiguousarray(value, dtype="<f4")
        if not np.isfinite(value).all():
            raise ProtocolError(f"{name} holds NaN or Inf")
        tensors[name] = value
    return save_safetensors(dict(sorted(tensors.items())))


@dataclass(frozen=True)
class Pending:
    """A committed delta, waiting for the reveal phase."""

    round: int
    delta_hash: bytes
    salt: bytes
    delta_bytes: int


@dataclass
class RoundResult:
    """How one round went: the verified receipt (``proven``, in the shape of
    ``blyan --json receipt verify``, and the ``receipt`` itself), or the step that
    failed first."""

    round: int
    proven: dict | None = None
    receipt: dict | None = None
    error: str | None = None


Trainer = Callable[[Work], dict]


class Node:
    def __init__(self, client: Client, key: Keypair):
        state = client.state()
        if state.get("genesis") is None:
            raise ProtocolError("the server has no genesis yet")
        self.client = client
        self.key = key
        self.public = key.public
        self.network_id = state["network_id"]
        # Trusted on first use; set it from a source you trust to check receipts
        # against that key instead.
        self.operator = unhex(state["genesis"]["operator_key"], 32)

    def submit(self, idempotency: bytes, command: command_pb2.Command) -> dict:
        """Signs and submits; ``idempotency`` names the step, so a repeated step gets
        the original answer."""
        command.idempotency_key = idempotency
        body = command.SerializeToString()
        signed = envelope_pb2.SignedCommand(
            body=body,
            signer=self.public,
            signature=self.key.sign(crypto.COMMAND_DOMAIN, self.network_id, body),
        )
        return self.client.submit(signed.SerializeToString())

    def register(self, experts: list[int], gpu_model: str, vram_mib: int, endpoint: str) -> dict:
        command = command_pb2.Command()
        command.register_node.capabilities.CopyFrom(
            types_pb2.NodeCapabilities(
                gpu_model=gpu_model, vram_mib=vram_mib, experts=experts, endpoint=endpoint
            )
        )
        return self.submit(b"register", command)

    def heartbeat(self) -> dict:
        """Heartbeats in the liveness window open now: ``{"window"}``, held by the
        server until the window closes. A window that closes between reading it and
        sending is followed by the next one, a few times."""
        for attempt in range(4):
            command = command_pb2.Command()
            command.heartbeat.window = self.client.head()["liveness_window"]
            try:
                return self.submit(os.urandom(16), command)
            except ApiError as error:
                if attempt == 3 or error.code not in (
                    "liveness_window_not_open",
                    "liveness_window_closing",
                ):
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def _item(self, view: dict) -> Item:
        data = self.client.blob(unhex(view["checksum"], 32))
        if len(data) != view["bytes"]:
            raise ProtocolError(f"item {view['id']}: {len(data)} bytes, the pool says {view['bytes']}")
        return Item(view["id"], data)

    def base(self, round_id: int) -> BaseModel | None:
        try:
            view = self.client.round_model(round_id)
        except ApiError as error:
            if error.status == 404 and error.code == "no_model":
                return None
            raise
        blobs = []
        for index, version in enumerate(view["versions"]):
            if version["expert"] != index:
                raise ProtocolError(f"the model of round {round_id}: version {index} names expert {version['expert']}")
            blobs.append(self.client.blob(unhex(version["weights_hash"], 32)))
        return BaseModel(
            inputs=view["inputs"],
            hidden=view["hidden"],
            outputs=view["outputs"],
            experts=view["experts"],
            seed=view["seed"],
            shared=self.client.blob(unhex(view["shared_hash"], 32)),
            expert_blobs=tuple(blobs),
        )

    def work(self, round_id: int) -> Work:
        """The node's shard of ``round_id``, every item fetched and checked, and the
        shard's proof checked against the round's assignments root."""
        view = self.client.assignment(round_id, self.public)
        shard, proof = view["shard"], view["proof"]
        if len(view["items"]) != shard["count"]:
            raise ProtocolError(f"{len(view['items'])} items for a shard of {shard['count']}")
        content = crypto.derive_key(
            crypto.SHARD_LEAF_CONTEXT,
            u64(round_id),
            self.public,
            u64(shard["start"]),
            u64(shard["count"]),
        )
        hashes = [unhex(h, 32) for h in proof["hashes"]]
        if unhex(shard["node"], 32) != self.public or not merkle.verify(
            unhex(view["assignments_root"], 32), proof["index"], proof["count"], content, hashes
        ):
            raise ProtocolError("the shard's proof does not verify against the assignments root")
        return Work(
            round=round_id,
            expert=view["expert"],
            pool_id=view["pool_id"],
            base=self.base(round_id),
            items=tuple(self._item(item) for item in view["items"]),
        )

    def commit(self, round_id: int, delta: bytes) -> Pending:
        """Uploads the delta and commits to it. The salt derives from the node's secret,
        the round and the delta, so a node that restarts mid-round commits the same
        bytes again and can still reveal."""
        self.client.put_blob(delta)
        delta_hash = blake3(delta).digest()
        pending = Pending(round_id, delta_hash, self.key.salt(round_id, delta_hash), len(delta))
        command = command_pb2.Command()
        command.commit_delta.round = round_id
        command.commit_delta.commitment = crypto.commitment(
            round_id, self.public, delta_hash, pending.salt
        )
        self.submit(f"commit-{round_id}".encode(), command)
        return pending

    def reveal(self, pending: Pending) -> dict:
        command = command_pb2.Command()
        reveal = command.reveal_delta
        reveal.round = pending.round
        reveal.delta_hash = pending.delta_hash
        reveal.salt = pending.salt
        reveal.delta_bytes = pending.delta_bytes
        return self.submit(f"reveal-{pending.round}".encode(), command)

    def receipt(self, round_id: int) -> tuple[dict, dict]:
        """The node's receipt of an ended round and what it proves, verified against the
        operator's key. A round's end makes a checkpoint due, so one follows at once."""
        attempt = 0
        while True:
            try:
                answer = self.client.receipt(round_id, self.public)
                return answer, receipt.verify(answer, self.operator)
            except ApiError as error:
                attempt += 1
                if error.code != "not_checkpointed" or attempt == 50:
                    raise
                time.sleep(0.1)

    def follow(
        self, trainer: Trainer, start: int, heartbeat_every: float = 5.0
    ) -> Iterator[RoundResult]:
        """Follows the log from seq ``start`` and takes part in every round that assigns
        this node a shard: it trains and commits when the assignments arrive, reveals
        when the reveal phase starts, and yields each round's result once it ended. It
        heartbeats every ``heartbeat_every`` seconds meanwhile. A failed round never
        stops it."""
        subscription = self.client.subscribe(start, wait=heartbeat_every)
        pending: dict[int, Pending] = {}
        joined: dict[int, str | None] = {}
        # A registration counts as the first heartbeat.
        beat = time.monotonic()
        try:
            while True:
                if time.monotonic() - beat >= heartbeat_every:
                    beat = time.monotonic()
                    try:
                        self.heartbeat()
                    except Exception as error:
                        # Too soon, lost or unreachable: the next one counts; liveness
                        # needs one per window, not every one.
                        print(f"heartbeat: {error}", file=sys.stderr)
                record = subscription.next()
                if record is None:
                    continue
                try:
                    event = event_pb2.Event.FromString(record.body)
                except DecodeError as error:
                    # Its hash checked, so the server logged it: a newer kind of event
                    # than these schemas know, which no round step of this node needs.
                    print(f"record {record.seq}: {error}", file=sys.stderr)
                    continue
                kind = event.WhichOneof("kind")
                if kind == "assignments_made":
                    made = event.assignments_made
                    mine = any(
                        made.nodes[i : i + 32] == self.public for i in range(0, len(made.nodes), 32)
                    )
                    if mine:
                        joined[made.round] = None
                        try:
                            work = self.work(made.round)
                            pending[made.round] = self.commit(
                                made.round, encode_delta(work, trainer(work))
                            )
                        except Exception as error:  # a trainer may fail in any way
                            traceback.print_exc()
                            joined[made.round] = f"{type(error).__name__}: {error}"
                elif kind == "phase_started":
                    started = event.phase_started
                    if started.phase == types_pb2.PHASE_REVEAL and started.round in pending:
                        try:
                            self.reveal(pending.pop(started.round))
                        except Exception as error:
                            joined[started.round] = joined[started.round] or str(error)
                elif kind in ("round_finalized", "round_aborted"):
                    round_id = getattr(event, kind).round
                    if round_id in joined:
                        failure = joined.pop(round_id)
                        pending.pop(round_id, None)
                        result = RoundResult(round_id, error=failure)
                        if failure is None:
                            try:
                                result.receipt, result.proven = self.receipt(round_id)
                            except Exception as error:
                                result.error = f"{type(error).__name__}: {error}"
                        yield result
        finally:
            subscription.close()
