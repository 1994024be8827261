"""A trainer callback in PyTorch for the round's expert.

It builds the ledger's MoE block from the round's base model (a softmax router over the
experts, each a ReLU MLP), trains only the round's expert with AdamW on the mean squared
error over the node's items, and returns the change to the expert's four tensors: the
delta the validators add to the base and measure on held-out items.

    python -m blyan --server URL node --key node.json --trainer examples/torch_node.py:train

It runs on the first CUDA device when there is one, else on the CPU.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from blyan import Work

STEPS = 100
LEARNING_RATE = 0.003


def forward(weights: dict[str, torch.Tensor], experts: int, x: torch.Tensor) -> torch.Tensor:
    gates = torch.softmax(x @ weights["router.weight"].T + weights["router.bias"], dim=1)
    output = torch.zeros(x.shape[0], weights["experts.0.fc2.bias"].shape[0], device=x.device)
    for e in range(experts):
        hidden = torch.relu(x @ weights[f"experts.{e}.fc1.weight"].T + weights[f"experts.{e}.fc1.bias"])
        out = hidden @ weights[f"experts.{e}.fc2.weight"].T + weights[f"experts.{e}.fc2.bias"]
        output = output + gates[:, e : e + 1] * out
    return output


def train(work: Work) -> dict[str, np.ndarray]:
    if work.base is None:
        raise ValueError("the ledger names no model to train")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    weights = {
        name: torch.from_numpy(value.copy()).to(device) for name, value in work.base.weights().items()
    }
    x, y = (torch.from_numpy(value.copy()).to(device) for value in work.xy())
    trained = list(work.delta_shapes)
    base = {name: weights[name].clone() for name in trained}
    for name in trained:
        weights[name].requires_grad_(True)
    optimizer = torch.optim.AdamW([weights[name] for name in trained], lr=LEARNING_RATE, weight_decay=0.0)
    with torch.no_grad():
        first = torch.mean((forward(weights, work.base.experts, x) - y) ** 2).item()
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.mean((forward(weights, work.base.experts, x) - y) ** 2)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = torch.mean((forward(weights, work.base.experts, x) - y) ** 2).item()
        # On stderr: stdout is the node's one JSON line per round.
        print(
            f"round {work.round}, expert {work.expert}: training loss {first:.6f} -> {last:.6f} on {device}",
            file=sys.stderr,
        )
        return {name: (weights[name] - base[name]).cpu().numpy() for name in trained}
