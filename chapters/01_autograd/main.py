"""Chapter 01: autograd. A two-layer MLP from raw tensor ops, trained on a 2-D toy problem.

    python -m tinytorch.course run 1            # the default run (a few seconds)
    python -m tinytorch.course run 1 --quick    # a smoke run for CI
    python -m tinytorch.course run 1 --out DIR  # where to write the plots (default: out/)

No nn.Module and no optimizer: the weights are plain leaf tensors with requires_grad=True,
the model is `tanh(x @ W1 + b1) @ W2 + b2`, the loss is cross-entropy, and the update is
`w -= lr * w.grad` inside `no_grad()`. Before training, the gradients autograd computes are
checked against central finite differences in float64 (tinytorch.autograd.gradcheck).

Writes into --out: loss.png (the training loss and accuracy per step), boundary.png (the
learned decision regions over the data) and metrics.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import this checkout's tinytorch

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import tinytorch as tt  # noqa: E402
import tinytorch.nn.functional as F  # noqa: E402
from tinytorch.gradcheck import gradcheck  # noqa: E402


def spirals(n_per_class: int, classes: int, rng, noise: float = 0.2):
    """`classes` interleaved spiral arms in the plane: (N, 2) points and (N,) labels.

    No straight line separates them, so the network has to learn a curved boundary.
    """
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = np.linspace(c * 2 * np.pi / classes, c * 2 * np.pi / classes + 4.0, n_per_class)
        theta = theta + rng.normal(0, noise, n_per_class)
        xs.append(np.stack([r * np.cos(theta), r * np.sin(theta)], 1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs), np.concatenate(ys)


def init_params(hidden: int, classes: int, dtype=tt.float32):
    """W1 (2, H), b1 (H,), W2 (H, C), b2 (C,): leaves that require grad.

    Scaled by 1/sqrt(fan_in) so tanh starts in its linear range instead of saturating.
    """
    w1 = tt.randn(2, hidden, dtype=dtype) * (1 / np.sqrt(2))
    w2 = tt.randn(hidden, classes, dtype=dtype) * (1 / np.sqrt(hidden))
    params = [w1, tt.zeros(hidden, dtype=dtype), w2, tt.zeros(classes, dtype=dtype)]
    return [p.detach().requires_grad_() for p in params]


def forward(x, w1, b1, w2, b2):
    """x (N, 2) -> logits (N, C): every step is a differentiable tensor op."""
    h = (x @ w1 + b1).tanh()  # (N, H); b1 (H,) broadcasts over the rows
    return h @ w2 + b2  # (N, C)


def check_gradients(x, y, params) -> float:
    """gradcheck the whole model + loss on a few points in float64; returns the largest
    difference between autograd's gradient and finite differences."""
    xs = tt.tensor(x[:8], dtype=tt.float64)
    ys = tt.tensor(y[:8])
    p64 = [p.detach().double().requires_grad_() for p in params]

    def loss_fn(*ps):
        return F.cross_entropy(forward(xs, *ps), ys)

    assert gradcheck(loss_fn, p64, eps=1e-6, atol=1e-7, rtol=1e-5)
    # the same comparison by hand, to report its size: perturb one weight at a time
    for p in p64:
        p.grad = None
    loss_fn(*p64).backward()
    worst = 0.0
    for p in p64:
        arr = p.data
        for idx in list(np.ndindex(*p.shape))[:20]:
            orig = float(arr[idx])
            with tt.no_grad():
                arr[idx] = orig + 1e-6
                up = loss_fn(*p64).item()
                arr[idx] = orig - 1e-6
                down = loss_fn(*p64).item()
            arr[idx] = orig
            worst = max(worst, abs((up - down) / 2e-6 - float(p.grad.data[idx])))
    return worst


def train(x, y, params, steps: int, lr: float, log_every: int):
    xt, yt = tt.tensor(x, dtype=tt.float32), tt.tensor(y)
    hist = {"step": [], "loss": [], "acc": []}
    for step in range(1, steps + 1):
        logits = forward(xt, *params)
        loss = F.cross_entropy(logits, yt)
        for p in params:
            p.grad = None
        loss.backward()
        with tt.no_grad():  # the update itself must not be recorded in a graph
            for p in params:
                p.data -= lr * p.grad.data
        acc = float((logits.detach().argmax(dim=1) == yt).float().mean().item())
        hist["step"].append(step)
        hist["loss"].append(loss.item())
        hist["acc"].append(acc)
        if step == 1 or step % log_every == 0 or step == steps:
            print(f"step {step:5d}  loss {loss.item():.4f}  accuracy {acc:.3f}", flush=True)
    return hist


def plot(hist, x, y, params, out: Path):
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(hist["step"], hist["loss"])
    ax[0].set(xlabel="step", ylabel="cross-entropy", title="training loss", yscale="log")
    ax[1].plot(hist["step"], hist["acc"], color="tab:green")
    ax[1].set(xlabel="step", ylabel="accuracy", title="training accuracy", ylim=(0, 1.02))
    fig.tight_layout()
    loss_png = out / "loss.png"
    fig.savefig(loss_png, dpi=110)
    plt.close(fig)

    g = np.linspace(-1.2, 1.2, 200)
    gx, gy = np.meshgrid(g, g)
    grid = tt.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=tt.float32)
    with tt.no_grad():
        pred = forward(grid, *params).argmax(dim=1).numpy().reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contourf(gx, gy, pred, alpha=0.3, cmap="brg")
    ax.scatter(x[:, 0], x[:, 1], c=y, s=8, cmap="brg")
    ax.set(title="decision regions of the MLP", aspect="equal")
    fig.tight_layout()
    boundary_png = out / "boundary.png"
    fig.savefig(boundary_png, dpi=110)
    plt.close(fig)
    return loss_png, boundary_png


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run for CI")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="output folder")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    steps = args.steps or (500 if args.quick else 3000)
    args.out.mkdir(parents=True, exist_ok=True)

    tt.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y = spirals(100 if args.quick else 200, 3, rng)
    params = init_params(args.hidden, 3)
    print(f"data: {len(x)} points in 3 spiral arms; model: 2 -> {args.hidden} (tanh) -> 3")

    worst = check_gradients(x, y, params)
    print(f"gradient check: autograd agrees with finite differences (max |diff| {worst:.2e})")

    t0 = time.perf_counter()
    hist = train(x, y, params, steps, args.lr, max(steps // 10, 1))
    seconds = time.perf_counter() - t0
    loss_png, boundary_png = plot(hist, x, y, params, args.out)
    metrics = {
        "steps": steps,
        "hidden": args.hidden,
        "lr": args.lr,
        "final_loss": hist["loss"][-1],
        "final_accuracy": hist["acc"][-1],
        "train_seconds": round(seconds, 2),
        "gradcheck_max_abs_diff": worst,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(
        f"trained {steps} steps in {seconds:.1f}s: loss {hist['loss'][-1]:.4f}, "
        f"accuracy {hist['acc'][-1]:.3f}"
    )
    print(f"loss curve: {loss_png}")
    print(f"decision regions: {boundary_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
