"""A light trainer in numpy: Adam on the round's expert, with the gradient written out
by hand. It trains the same model on the same loss as the candle trainer (``ml/``) and
the PyTorch example (``examples/torch_node.py``) without a heavy dependency, which makes
it the test suite's Python node.

The model is the ledger's MoE block: a softmax router over the experts, each a ReLU MLP
(``inputs -> hidden -> outputs``); the output is the gate-weighted sum of the experts'.
Only the round's expert trains, so the other experts' gated outputs are constants."""

from __future__ import annotations

import numpy as np

from .node import Work


def train(work: Work, steps: int = 100, learning_rate: float = 0.003) -> dict[str, np.ndarray]:
    """The change to the round's expert after ``steps`` Adam steps on the mean squared
    error over all the node's items."""
    if work.base is None:
        raise ValueError("the ledger names no model to train")
    weights = {name: value.astype(np.float64) for name, value in work.base.weights().items()}
    x, y = (value.astype(np.float64) for value in work.xy())
    logits = x @ weights["router.weight"].T + weights["router.bias"]
    gates = np.exp(logits - logits.max(axis=1, keepdims=True))
    gates /= gates.sum(axis=1, keepdims=True)

    def expert_out(prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pre = x @ weights[f"{prefix}.fc1.weight"].T + weights[f"{prefix}.fc1.bias"]
        hidden = np.maximum(pre, 0.0)
        return pre, hidden, hidden @ weights[f"{prefix}.fc2.weight"].T + weights[f"{prefix}.fc2.bias"]

    others = sum(
        gates[:, [e]] * expert_out(f"experts.{e}")[2]
        for e in range(work.base.experts)
        if e != work.expert
    )
    prefix = f"experts.{work.expert}"
    names = [f"{prefix}.fc1.weight", f"{prefix}.fc1.bias", f"{prefix}.fc2.weight", f"{prefix}.fc2.bias"]
    base = {name: weights[name].copy() for name in names}
    gate = gates[:, [work.expert]]
    moments = {name: (np.zeros_like(base[name]), np.zeros_like(base[name])) for name in names}
    beta1, beta2, epsilon = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        pre, hidden, out = expert_out(prefix)
        error = 2.0 * (others + gate * out - y) / y.size
        d_out = error * gate
        d_pre = (d_out @ weights[f"{prefix}.fc2.weight"]) * (pre > 0)
        gradients = {
            names[0]: d_pre.T @ x,
            names[1]: d_pre.sum(axis=0),
            names[2]: d_out.T @ hidden,
            names[3]: d_out.sum(axis=0),
        }
        for name in names:
            m, v = moments[name]
            m[:] = beta1 * m + (1 - beta1) * gradients[name]
            v[:] = beta2 * v + (1 - beta2) * gradients[name] ** 2
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            weights[name] -= learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)
    return {name: (weights[name] - base[name]).astype(np.float32) for name in names}
