"""``python -m blyan``: a key file, a GPU node with a Python trainer, and offline
receipt checks."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys

from . import receipt
from .client import Client
from .crypto import Keypair, unhex
from .node import Node, Trainer


def load_trainer(spec: str) -> Trainer:
    """``light`` (numpy, built in), ``module:function`` or ``path/to/file.py:function``."""
    if spec == "light":
        from . import light

        return light.train
    target, _, function = spec.rpartition(":")
    if not target:
        raise SystemExit(f"--trainer {spec}: expected light, module:function or file.py:function")
    if target.endswith(".py"):
        loaded = importlib.util.spec_from_file_location("blyan_trainer", target)
        if loaded is None or loaded.loader is None:
            raise SystemExit(f"--trainer {spec}: cannot load {target}")
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, function)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blyan", description=__doc__)
    parser.add_argument("--server", default=os.environ.get("BLYAN_SERVER", "http://127.0.0.1:7420"))
    commands = parser.add_subparsers(dest="command", required=True)

    keygen = commands.add_parser("keygen", help="write a new ed25519 key file")
    keygen.add_argument("--out", required=True)

    node = commands.add_parser(
        "node",
        help="register, then take part in rounds: train with --trainer, upload, commit, "
        "reveal, and verify each receipt; one JSON line per ended round on stdout",
    )
    node.add_argument("--key", required=True, help="the node's key file")
    node.add_argument("--trainer", default="light", help="light, module:function or file.py:function")
    node.add_argument("--rounds", type=int, help="stop after this many ended rounds")
    node.add_argument("--experts", help="comma separated; every expert of the model when absent")
    node.add_argument("--gpu-model", default="python")
    node.add_argument("--vram-mib", type=int, default=1)
    node.add_argument("--endpoint", default="http://127.0.0.1")
    node.add_argument("--receipts", help="a folder to keep each round's receipt in")
    node.add_argument("--heartbeat-every", type=float, default=5.0, help="seconds")
    node.add_argument(
        "--from",
        dest="start",
        type=int,
        help="follow the log from this seq; the head when absent. A restarted node with a "
        "deterministic trainer (light is) makes the same delta again, so its commit gets the "
        "original answer and it can still reveal",
    )

    verify = commands.add_parser("verify-receipt", help="check a receipt file offline")
    verify.add_argument("file")
    verify.add_argument("--checkpoint-key", required=True, help="the operator's public key (hex)")

    args = parser.parse_args(argv)
    if args.command == "keygen":
        key = Keypair.generate()
        key.save(args.out)
        print(key.public.hex())
        return 0
    if args.command == "verify-receipt":
        try:
            with open(args.file, encoding="utf-8") as file:
                answer = receipt.loads(file.read())
            proven = receipt.verify(answer, unhex(args.checkpoint_key, 32))
        except (receipt.ReceiptError, ValueError) as error:
            print(f"the receipt does not verify: {error}", file=sys.stderr)
            return 1
        print(json.dumps(proven, separators=(",", ":")))
        return 0

    trainer = load_trainer(args.trainer)
    client = Client(args.server)
    participant = Node(client, Keypair.load(args.key))
    if args.experts is None:
        experts = list(range(client.get_json("/v1/experts")["experts"]))
    else:
        experts = [int(e) for e in args.experts.split(",")]
    start = client.head()["events"] if args.start is None else args.start
    participant.register(experts, args.gpu_model, args.vram_mib, args.endpoint)
    print(f"node {participant.public.hex()} registered, following from seq {start}", file=sys.stderr)
    failed = ended = 0
    if args.rounds == 0:
        return 0
    for result in participant.follow(trainer, start, args.heartbeat_every):
        ended += 1
        if result.receipt is not None and args.receipts is not None:
            os.makedirs(args.receipts, exist_ok=True)
            with open(os.path.join(args.receipts, f"round-{result.round}.json"), "w", encoding="utf-8") as file:
                json.dump(result.receipt, file)
        line = {"round": result.round, "proven": result.proven, "error": result.error}
        print(json.dumps(line, separators=(",", ":")), flush=True)
        failed += result.error is not None
        if args.rounds is not None and ended >= args.rounds:
            break
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
