"""Chapter 01: autograd. A two-layer MLP from raw tensor ops, trained on three spiral arms.

    python -m tinytorch.course run 1                # the default run (a few seconds)
    python -m tinytorch.course run 1 --quick        # a smoke run for CI
    python -m tinytorch.course run 1 --hidden 8     # one of the lesson's experiments
    python -m tinytorch.course run 1 --compare      # the default and every experiment, one plot
    python -m tinytorch.course run 1 --record       # also write benchmarks/results/ch01_*

No nn.Module and no optimizer: the weights are plain leaf tensors with requires_grad=True,
the model is `tanh(x @ W1 + b1) @ W2 + b2`, the loss is cross-entropy, and the update is
`w -= lr * w.grad` inside `no_grad()` (full-batch gradient descent). Before training, the
gradients autograd computes are checked against central finite differences in float64.

Writes into --out: loss.png (loss and accuracy per step), boundary.png (the learned decision
regions over the data) and metrics.json; with --compare, loss_curves.png (every run's loss).
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
from spirals import init_params, spirals

import tinytorch as tt
import tinytorch.nn.functional as F
from tinytorch.bench import record
from tinytorch.chapter import chapter_args
from tinytorch.gradcheck import gradcheck

# ---- config ---------------------------------------------------------------------------------
p = chapter_args(__file__, "Chapter 01: an MLP from raw tensor ops on three spirals", seed=0)
p.add_argument("--steps", type=int, default=None, help="gradient steps (3000; --quick: 500)")
p.add_argument("--hidden", type=int, default=64, help="hidden units")
p.add_argument("--lr", type=float, default=0.3, help="learning rate")
p.add_argument("--activation", choices=["tanh", "relu"], default="tanh")
p.add_argument("--init-scale", type=float, default=4.0, help="W1's scale (see spirals.py)")
p.add_argument("--compare", action="store_true", help="also train the lesson's experiments")
args = p.parse_args()
steps = args.steps or (500 if args.quick else 3000)

# The lesson's "things to try", each as a change to the default run.
VARIANTS = {
    "default": {},
    "--hidden 4": {"hidden": 4},
    "--hidden 8": {"hidden": 8},
    "--lr 0.03": {"lr": 0.03},
    "--lr 1": {"lr": 1.0},
    "--lr 20": {"lr": 20.0},
    "--activation relu": {"activation": "relu"},
    "--init-scale 1": {"init_scale": 1.0},
}


def forward(x, w1, b1, w2, b2, activation="tanh"):
    """x (N, 2) -> logits (N, C): every step is a differentiable tensor op."""
    h = x @ w1 + b1  # (N, H); b1 (H,) broadcasts over the rows
    h = h.tanh() if activation == "tanh" else h.relu()
    return h @ w2 + b2  # (N, C)


def check_gradients(x, y, params, activation):
    """gradcheck the whole model + loss on 8 points, in float64 (raises if they disagree)."""
    xs, ys = tt.tensor(x[:8], dtype=tt.float64), tt.tensor(y[:8])
    p64 = [p.detach().double().requires_grad_() for p in params]

    def loss_fn(*ps):
        return F.cross_entropy(forward(xs, *ps, activation=activation), ys)

    return gradcheck(loss_fn, p64, eps=1e-6, atol=1e-7, rtol=1e-5)


def train(x, y, hidden, lr, activation, init_scale, log=True):
    """Full-batch gradient descent; returns (params, {"loss": [...], "acc": [...]})."""
    tt.manual_seed(args.seed)
    params = init_params(hidden, 3, init_scale)
    if log:
        check_gradients(x, y, params, activation)
        print("gradient check: autograd agrees with finite differences (float64, 8 points)")
    xt, yt = tt.tensor(x, dtype=tt.float32), tt.tensor(y)
    hist = {"loss": [], "acc": []}
    for step in range(1, steps + 1):
        logits = forward(xt, *params, activation=activation)
        loss = F.cross_entropy(logits, yt)
        for w in params:
            w.grad = None
        loss.backward()
        with tt.no_grad():  # the update itself must not be recorded in a graph
            for w in params:
                w.data -= lr * w.grad.data
        hist["loss"].append(loss.item())
        hist["acc"].append((logits.detach().argmax(dim=1) == yt).float().mean().item())
        if log and (step == 1 or step % max(steps // 10, 1) == 0 or step == steps):
            print(f"step {step:5d}  loss {hist['loss'][-1]:.4f}  accuracy {hist['acc'][-1]:.3f}")
    return params, hist


def summary(name, cfg, hist):
    """One row of the results table: the run's settings and where it ended."""
    loss = np.asarray(hist["loss"])
    return {
        "run": name,
        "hidden": cfg["hidden"],
        "lr": cfg["lr"],
        "activation": cfg["activation"],
        "init scale": cfg["init_scale"],
        "steps": steps,
        "final loss": float(loss[-1]),
        "final accuracy": hist["acc"][-1],
        "loss jumps (x1.5)": int((loss[1:] > 1.5 * loss[:-1]).sum()),
    }


# ---- the run --------------------------------------------------------------------------------
rng = np.random.default_rng(args.seed)
x, y = spirals(100 if args.quick else 200, 3, rng)
cfg = dict(hidden=args.hidden, lr=args.lr, activation=args.activation, init_scale=args.init_scale)
print(f"data: {len(x)} points on 3 spiral arms (1.25 turns); model: 2 -> {args.hidden} -> 3")
params, hist = train(x, y, **cfg)
row = summary("this run", cfg, hist)
print(f"trained {steps} steps: loss {row['final loss']:.4f}, accuracy {row['final accuracy']:.3f}")

# ---- plots ----------------------------------------------------------------------------------
fig, ax = plt.subplots(1, 2, figsize=(10, 4))
ax[0].plot(hist["loss"])
ax[0].set(xlabel="step", ylabel="cross-entropy", title="training loss", yscale="log")
ax[1].plot(hist["acc"], color="tab:green")
ax[1].set(xlabel="step", ylabel="accuracy", title="training accuracy", ylim=(0, 1.02))
fig.tight_layout()
fig.savefig(args.out / "loss.png", dpi=100)
plt.close(fig)

g = np.linspace(-1.2, 1.2, 200)
gx, gy = np.meshgrid(g, g)
grid = tt.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=tt.float32)
with tt.no_grad():
    pred = forward(grid, *params, activation=args.activation).argmax(dim=1).numpy()
fig, ax = plt.subplots(figsize=(5, 5))
ax.contourf(gx, gy, pred.reshape(gx.shape), alpha=0.3, cmap="brg")
ax.scatter(x[:, 0], x[:, 1], c=y, s=8, cmap="brg")
ax.set(title=f"decision regions (accuracy {row['final accuracy']:.3f})", aspect="equal")
fig.tight_layout()
fig.savefig(args.out / "boundary.png", dpi=100)
plt.close(fig)
(args.out / "metrics.json").write_text(json.dumps(row, indent=2) + "\n")
print(f"wrote {args.out / 'loss.png'}, {args.out / 'boundary.png'}, metrics.json")
if args.record:
    notes = "Chapter 01's MLP on three spiral arms (full-batch gradient descent, float32)."
    record(
        "ch01",
        "cpu",
        list(row),
        [row],
        notes,
        figures=[args.out / f for f in ("loss.png", "boundary.png")],
    )

# ---- the lesson's experiments, side by side -------------------------------------------------
if args.compare:
    base = {k: p.get_default(k) for k in cfg}  # the default run, whatever this run changed
    rows = []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, change in VARIANTS.items():  # (each run: about as long as the default)
        run_cfg = {**base, **change}
        _, h = train(x, y, **run_cfg, log=False)
        rows.append(summary(name, run_cfg, h))
        ax.plot(h["loss"], label=f"{name}: accuracy {h['acc'][-1]:.3f}", lw=1)
        print(f"{name:18s} loss {h['loss'][-1]:.4f}  accuracy {h['acc'][-1]:.3f}")
    ax.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="the lesson's experiments")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "loss_curves.png", dpi=100)
    plt.close(fig)
    print(f"wrote {args.out / 'loss_curves.png'}")
    if args.record:
        notes = "Each row changes one setting of the default run (same data, same seed)."
        record(
            "ch01_variants",
            "cpu",
            list(rows[0]),
            rows,
            notes,
            figures=[args.out / "loss_curves.png"],
        )
