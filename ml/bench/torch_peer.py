"""The PyTorch peer of `cargo bench -p blyan-ml --bench learn`.

The same three roles on the CPU, with the same model, shapes, batch, optimizer and
step counts as the Rust bench (ml/benches/learn.rs):

- node: the default MoE (8 -> 16 -> 4, four experts, softmax router), one delta =
  the loss before, 100 AdamW steps (lr 0.01, no weight decay) on one expert's four
  tensors over 256 samples, the loss after, and the delta (new - base);
- validator: a delta measured = the base's held-out loss, base + delta, and its
  held-out loss, on 256 samples;
- probe: a 64 -> 256 -> 64 ReLU MLP on a batch of 512, 200 AdamW steps (lr 1e-3).

The Rust side also decodes its items from safetensors and encodes the delta as
safetensors inside the timed region; this script does neither, so its figures are,
if anything, flattering to PyTorch.

    python3 ml/bench/torch_peer.py [--threads N]
"""

import argparse
import time

import torch

INPUTS, HIDDEN, OUTPUTS, EXPERTS = 8, 16, 4, 4


def moe_init(seed):
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, fan_in):
        bound = 1.0 / fan_in**0.5
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound

    weights = {
        "router.weight": uniform((EXPERTS, INPUTS), INPUTS),
        "router.bias": uniform((EXPERTS,), INPUTS),
    }
    for expert in range(EXPERTS):
        prefix = f"experts.{expert}"
        weights[f"{prefix}.fc1.weight"] = uniform((HIDDEN, INPUTS), INPUTS)
        weights[f"{prefix}.fc1.bias"] = uniform((HIDDEN,), INPUTS)
        weights[f"{prefix}.fc2.weight"] = uniform((OUTPUTS, HIDDEN), HIDDEN)
        weights[f"{prefix}.fc2.bias"] = uniform((OUTPUTS,), HIDDEN)
    return weights


def forward(weights, x):
    gates = torch.softmax(x @ weights["router.weight"].t() + weights["router.bias"], dim=1)
    output = None
    for expert in range(EXPERTS):
        prefix = f"experts.{expert}"
        hidden = torch.relu(x @ weights[f"{prefix}.fc1.weight"].t() + weights[f"{prefix}.fc1.bias"])
        out = hidden @ weights[f"{prefix}.fc2.weight"].t() + weights[f"{prefix}.fc2.bias"]
        gated = out * gates[:, expert : expert + 1]
        output = gated if output is None else output + gated
    return output


def expert_names(expert):
    prefix = f"experts.{expert}"
    return [f"{prefix}.{layer}.{kind}" for layer in ("fc1", "fc2") for kind in ("weight", "bias")]


def train_expert(base, expert, x, y, steps=100):
    trained = {name: base[name].clone().requires_grad_(True) for name in expert_names(expert)}
    weights = {**base, **trained}
    optimizer = torch.optim.AdamW(list(trained.values()), lr=0.01, weight_decay=0.0)
    with torch.no_grad():
        first = torch.mean((forward(weights, x) - y) ** 2).item()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.mean((forward(weights, x) - y) ** 2)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = torch.mean((forward(weights, x) - y) ** 2).item()
        delta = {name: trained[name].detach() - base[name] for name in trained}
    return delta, first, last


def node():
    base = moe_init(2)
    x, y = torch.rand(256, INPUTS) * 2 - 1, torch.rand(256, OUTPUTS)
    train_expert(base, 0, x, y)
    deltas = 20
    started = time.perf_counter()
    for delta in range(deltas):
        train_expert(base, delta % EXPERTS, x, y)
    seconds = time.perf_counter() - started
    print(
        f"node: {deltas * 100 / seconds:.0f} training steps/s "
        f"({seconds * 1e3 / deltas:.1f} ms a delta of 100 steps, 256 samples)"
    )


def validator():
    base = moe_init(2)
    x, y = torch.rand(256, INPUTS) * 2 - 1, torch.rand(256, OUTPUTS)
    deltas = [train_expert(base, expert, x, y)[0] for expert in range(EXPERTS)]
    hx, hy = torch.rand(256, INPUTS) * 2 - 1, torch.rand(256, OUTPUTS)

    def measure(delta):
        with torch.no_grad():
            before = torch.mean((forward(base, hx) - hy) ** 2).item()
            updated = dict(base)
            for name, change in delta.items():
                updated[name] = base[name] + change
            after = torch.mean((forward(updated, hx) - hy) ** 2).item()
        return before - after

    measure(deltas[0])
    measured = 400
    started = time.perf_counter()
    for index in range(measured):
        measure(deltas[index % EXPERTS])
    seconds = time.perf_counter() - started
    print(
        f"validator: {measured / seconds:.0f} deltas measured/s "
        f"({seconds * 1e3 / measured:.2f} ms a delta, 256 held-out samples)"
    )


def probe():
    batch, inputs, hidden, outputs, steps = 512, 64, 256, 64, 200
    x, y = torch.randn(batch, inputs), torch.randn(batch, outputs)
    w1 = (torch.randn(hidden, inputs) / inputs**0.5).requires_grad_(True)
    b1 = torch.zeros(hidden, requires_grad=True)
    w2 = (torch.randn(outputs, hidden) / hidden**0.5).requires_grad_(True)
    b2 = torch.zeros(outputs, requires_grad=True)
    optimizer = torch.optim.AdamW([w1, b1, w2, b2], lr=1e-3, weight_decay=0.0)

    def step():
        optimizer.zero_grad(set_to_none=True)
        prediction = torch.relu(x @ w1.t() + b1) @ w2.t() + b2
        loss = torch.mean((prediction - y) ** 2)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - started
    print(
        f"probe: {steps} AdamW steps of a {inputs}->{hidden}->{outputs} MLP on a batch of "
        f"{batch} in {seconds:.3f} s ({steps / seconds:.0f} steps/s)"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("roles", nargs="*", default=["node", "validator", "probe"])
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for role in arguments.roles:
        {"node": node, "validator": validator, "probe": probe}[role]()


if __name__ == "__main__":
    main()
