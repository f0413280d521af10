"""What the LayerNorm benchmarks (kernels_cpu.py, kernels_gpu.py) share: the byte count, the
library-path timing (F.layer_norm through autograd, fused and composed), the table columns and
the plot.

Byte count (the GB/s column): every byte a fused implementation must move, each input read
once and each output written once, in float32:
    forward   read x (N*C), weight, bias (2C); write y (N*C), mean, rstd (2N)
    backward  read dy, x (2*N*C), weight (C), mean, rstd (2N); write dx (N*C), dweight, dbias (2C)
    total     5*N*C + 5*C + 4*N floats.
The same count is used for every implementation, so GB/s is a speed in common units; an
implementation that reads x and dy twice in the backward (PyTorch's separate dweight/dbias
kernel) moves more bytes than it is credited with.
"""

from __future__ import annotations

EPS = 1e-5

COLUMNS = [
    "C",
    "N",
    "impl",
    "fwd_ms",
    "bwd_ms",
    "fwdbwd_ms",
    "fwdbwd_GBps",
    "vs_torch",
    "max_rel_err",
]


def layernorm_bytes(N: int, C: int, part: str = "fwdbwd") -> int:
    fwd = (2 * N * C + 2 * C + 2 * N) * 4
    bwd = (3 * N * C + 3 * C + 2 * N) * 4
    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[part]


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (normwise), as float64 NumPy."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def make_row(C, N, impl, fwd_s, bwd_s, fwdbwd_s, torch_fwdbwd_s, err):
    return {
        "C": C,
        "N": N,
        "impl": impl,
        "fwd_ms": fwd_s * 1e3,
        "bwd_ms": bwd_s * 1e3,
        "fwdbwd_ms": fwdbwd_s * 1e3,
        "fwdbwd_GBps": layernorm_bytes(N, C) / fwdbwd_s / 1e9,
        "vs_torch": (torch_fwdbwd_s / fwdbwd_s) if torch_fwdbwd_s else float("nan"),
        "max_rel_err": err,
    }


def torch_calls(xr, wr, br, dyr, C):
    """PyTorch's LayerNorm on torch tensors (xr, wr, br require grad), the reference of every
    row: (forward, forward + backward), each a function of no arguments."""
    from tinytorch.bench import import_torch

    torch = import_torch()  # PyTorch's own OpenMP defaults (tinytorch.bench)

    def fwd():
        return torch.nn.functional.layer_norm(xr, (C,), wr, br, EPS)

    def fwdbwd():
        return torch.autograd.grad(fwd(), (xr, wr, br), dyr)

    return fwd, fwdbwd


def kernel_calls(x, w, b, dy, version):
    """The raw kernels of one version on raw arrays: (forward, forward + backward), each a
    function of no arguments; forward + backward returns (y, (dx, dweight, dbias))."""
    from tinytorch.kernels import layernorm as L

    def fwd():
        return L.forward(x, w, b, EPS, version=version)

    def fwdbwd():
        y, mean, rstd = L.forward(x, w, b, EPS, version=version)
        return y, L.backward(dy, x, w, mean, rstd, version=version)

    return fwd, fwdbwd


def library_rows(C, N, arrays, device, timer, warmup, repeat, t_fb, errs, names):
    """F.layer_norm through tinytorch Tensors and autograd, once with the fused Function and
    once with the composed tensor ops (tinytorch.kernels.set_fused(True/False)), on the same
    arrays (x, w, b, dy): one row each. `timer(fn, warmup, repeat)` gives seconds; `errs(y,
    grads)` the error against PyTorch; `names` = the (fused, composed) row names."""
    import tinytorch
    import tinytorch.kernels

    F = tinytorch.nn.functional
    x, w, b, dy = arrays
    xt, wt, bt = (tinytorch.tensor(a, device=device, requires_grad=True) for a in (x, w, b))
    dyt = tinytorch.tensor(dy, device=device)

    def lib_fwd():
        return F.layer_norm(xt, (C,), wt, bt, EPS)

    def lib_fwdbwd():
        xt.grad = wt.grad = bt.grad = None
        y = lib_fwd()
        y.backward(dyt)
        return y

    rows = []
    for name, fused in zip(names, (True, False)):
        tinytorch.kernels.set_fused(fused)
        try:
            y = lib_fwdbwd()
            err = errs(y.data, [t.grad.data for t in (xt, wt, bt)])
            f, fb = timer(lib_fwd, warmup, repeat), timer(lib_fwdbwd, warmup, repeat)
            rows.append(make_row(C, N, name, f, fb - f, fb, t_fb, err))
            print(f"  {name:21s} fwd+bwd {fb * 1e3:8.3f} ms  err {err:.1e}", flush=True)
        except Exception as e:  # a failing path must not hide the other numbers
            print(f"  {name} FAILED: {type(e).__name__}: {e}", flush=True)
            rows.append({"C": C, "N": N, "impl": name, "max_rel_err": f"FAILED: {e}"})
        finally:
            tinytorch.kernels.set_fused(True)
    return rows


def plot(rows, path, title, hlines=()):
    """Bars of forward+backward GB/s per implementation, one group per C; `hlines` are
    (value, label) reference lines (e.g. the copy bandwidth and 75% of it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    Cs = sorted({r["C"] for r in rows})
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    width = 0.8 / max(1, len(impls))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(Cs) * max(1, len(impls)) / 3), 4.5))
    for i, impl in enumerate(impls):
        vals = [
            next((r["fwdbwd_GBps"] for r in rows if r["C"] == C and r["impl"] == impl), 0.0)
            for C in Cs
        ]
        ax.bar(np.arange(len(Cs)) + (i - (len(impls) - 1) / 2) * width, vals, width, label=impl)
    for value, label in hlines:
        ax.axhline(value, ls="--", lw=1, color="k" if "copy" in label else "gray")
        ax.text(len(Cs) - 0.5, value, " " + label, va="bottom", ha="right", fontsize=8)
    ax.set_xticks(np.arange(len(Cs)), [f"C={C}\nN={_n(rows, C)}" for C in Cs])
    ax.set_ylabel("forward+backward GB/s (bytes a fused kernel must move)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _n(rows, C):
    return next(r["N"] for r in rows if r["C"] == C)
