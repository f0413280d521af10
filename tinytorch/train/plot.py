"""Training curves and search results as figures (matplotlib, the `bench` extra).

plot_run("runs/gpt")              # runs/gpt/curves.png from runs/gpt/metrics.jsonl
plot_search(rows, "search.png")   # value against each searched parameter
"""

from __future__ import annotations

import math
from pathlib import Path

from .logging import read_jsonl


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'tinytorch[bench]'") from e
    return plt


def _smooth(values, k):
    from ..chapter import smooth

    return smooth(values, k)


def plot_run(run_dir, out=None, title: str | None = None) -> Path:
    """Draw a run's curves from run_dir/metrics.jsonl: the losses (train, smoothed, and every
    val/* loss) on the left, the learning rate and gradient norm on the right. Writes `out`
    (default run_dir/curves.png) and returns its path."""
    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if not rows:
        raise ValueError(f"plot_run: {run_dir / 'metrics.jsonl'} holds no rows")
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    tr = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    if tr:
        steps, loss = zip(*tr)
        k = max(1, min(25, len(loss) // 10))
        ax.plot(steps, loss, lw=0.5, alpha=0.35, color="C0")
        ax.plot(steps[k - 1 :], _smooth(loss, k), color="C0", label=f"train (mean of {k})")
    names = sorted({k for r in rows for k in r if k.startswith("val/")})
    for i, name in enumerate(n for n in names if "loss" in n):
        pts = [(r["step"], r[name]) for r in rows if name in r and math.isfinite(r[name])]
        if pts:
            ax.plot(*zip(*pts), "o-", ms=3, color=f"C{i + 1}", label=name)
    ax.set(xlabel="step", ylabel="loss", title=title or run_dir.name)
    ax.legend()
    lr = [(r["step"], r["train/lr"]) for r in rows if "train/lr" in r]
    if lr:
        ax2.plot(*zip(*lr), color="C3", label="lr")
        ax2.set(xlabel="step", ylabel="learning rate")
    gn = [(r["step"], r["train/grad_norm"]) for r in rows if "train/grad_norm" in r]
    if gn:
        ax3 = ax2.twinx()
        ax3.plot(*zip(*gn), lw=0.5, alpha=0.5, color="C4")
        ax3.set_ylabel("gradient norm (before clipping)", color="C4")
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_search(rows: list[dict], out, title: str = "search") -> Path:
    """One panel per searched parameter: each trial's value against that parameter (log axis
    when the values span more than a factor 20), pruned trials hollow."""
    plt = _plt()
    skip = {"trial", "value", "status", "last_step"}
    params = [k for k in rows[0] if k not in skip] if rows else []
    fig, axes = plt.subplots(1, max(1, len(params)), figsize=(4 * max(1, len(params)), 3.5))
    axes = list(axes) if len(params) > 1 else [axes]
    for ax, p in zip(axes, params):
        for status, face in (("complete", "C0"), ("pruned", "none")):
            pts = [
                (r[p], r["value"])
                for r in rows
                if r["status"] == status
                and isinstance(r[p], int | float)
                and math.isfinite(r["value"])
            ]
            if pts:
                ax.scatter(*zip(*pts), facecolors=face, edgecolors="C0", label=status)
        xs = [r[p] for r in rows if isinstance(r[p], int | float) and r[p] > 0]
        if xs and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set(xlabel=p, ylabel="value")
    axes[0].legend()
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
