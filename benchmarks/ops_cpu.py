"""Forward + backward time of the core ops on CPU: tinytorch against PyTorch.

    python -m benchmarks.ops_cpu              # sizes 64 and 1024 (about a minute)
    python -m benchmarks.ops_cpu --quick      # fewer repeats: checks that it runs
    python -m benchmarks.ops_cpu --threads 1  # both libraries on one thread (busy machines)
    python -m benchmarks.ops_cpu --sizes 1024 --ops exp cat   # a few ops: prints, records nothing

Each op runs on the same float32 inputs in both libraries, in the same process: the inputs
are leaves that require grad, one call builds the output and `backward(gradient)` sends a
fixed upstream gradient through it (the leaves' `.grad` reset before each call). Reported:
the time per call in microseconds (the median of a round of repeats, the best of 5 rounds that
alternate between the two libraries), and the ratio tinytorch / PyTorch.

At 64 x 64 the arithmetic takes a few microseconds, so the time is mostly per-op Python
overhead (creating the output, recording the graph, walking it back); at 1024 x 1024 it is
mostly the array arithmetic itself. The `overhead` row times `x + y` forward only on 1-element
tensors with no grad: the bare cost of one op call. Targets: within 2x of PyTorch at the small
size, within 1.5x at the medium one. Writes results/ops_cpu.{md,json,png}.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import tinytorch as tt
from tinytorch.bench import RESULTS, SAME_PROCESS, import_torch, time_cpu, write_results

# PyTorch with its own OpenMP defaults, loaded before any tinytorch kernel: both libraries' kernels
# then share that one runtime (one per process) and its settings
torch = import_torch()

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _restart_with_threads(n: int) -> None:
    """OpenBLAS reads its thread count once, when NumPy loads it: if the environment does not
    say `n` yet, start this benchmark again with it set (nothing has been measured so far)."""
    if all(os.environ.get(v) == str(n) for v in _THREAD_VARS):
        return
    env = {**os.environ, **{v: str(n) for v in _THREAD_VARS}}
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.ops_cpu", *sys.argv[1:]], env)


def _gmean(xs) -> float:
    return float(np.exp(np.mean(np.log(xs))))


def _F(L):
    return L.nn.functional


# name -> fn(L, x, y, b, idx, target): every op written once for both libraries
OPS = {
    "add": lambda L, x, y, b, i, t: x + y,
    "add_bcast": lambda L, x, y, b, i, t: x + b,
    "mul": lambda L, x, y, b, i, t: x * y,
    "div": lambda L, x, y, b, i, t: x / (y * y + 1),
    "matmul": lambda L, x, y, b, i, t: x @ y,
    "linear_relu": lambda L, x, y, b, i, t: L.relu(x @ y + b),
    "sum": lambda L, x, y, b, i, t: x.sum(),
    "mean_dim": lambda L, x, y, b, i, t: x.mean(dim=-1),
    "var_dim": lambda L, x, y, b, i, t: x.var(dim=-1),
    "max_dim": lambda L, x, y, b, i, t: x.max(dim=-1).values,
    "exp": lambda L, x, y, b, i, t: L.exp(x),
    "tanh": lambda L, x, y, b, i, t: L.tanh(x),
    "sigmoid": lambda L, x, y, b, i, t: L.sigmoid(x),
    "relu": lambda L, x, y, b, i, t: L.relu(x),
    "gelu": lambda L, x, y, b, i, t: _F(L).gelu(x),
    "softmax": lambda L, x, y, b, i, t: L.softmax(x, dim=-1),
    "log_softmax": lambda L, x, y, b, i, t: L.log_softmax(x, dim=-1),
    "cross_entropy": lambda L, x, y, b, i, t: _F(L).cross_entropy(x, t),
    "transpose_reshape": lambda L, x, y, b, i, t: x.transpose(0, 1).reshape(-1),
    "getitem_rows": lambda L, x, y, b, i, t: x[i],
    "cat": lambda L, x, y, b, i, t: L.cat([x, y], dim=1),
    "mlp_chain": lambda L, x, y, b, i, t: (L.tanh(x @ y + b) * x).sum(dim=-1).mean(),
}


def _inputs(n, rng):
    arrays = dict(
        x=rng.standard_normal((n, n)).astype(np.float32),
        y=(rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32),
        b=rng.standard_normal(n).astype(np.float32),
    )
    idx = rng.integers(0, n, n)
    target = rng.integers(0, n, n)
    ours = {k: tt.tensor(v, requires_grad=True) for k, v in arrays.items()}
    ref = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    return (ours, tt.tensor(idx), tt.tensor(target)), (ref, torch.tensor(idx), torch.tensor(target))


def _step(L, fn, leaves, idx, target, grad_holder):
    def step():
        for v in leaves.values():
            v.grad = None
        out = fn(L, leaves["x"], leaves["y"], leaves["b"], idx, target)
        if grad_holder[0] is None:  # the upstream gradient, made once per op
            grad_holder[0] = L.ones_like(out.detach())
        out.backward(grad_holder[0])

    return step


def _interleaved(fn_a, fn_b, rounds, **kw):
    """Time a and b in alternating rounds (each round: time_cpu's median) and keep each one's
    best round: on a shared machine, load comes in bursts, and alternating gives both the
    same conditions."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(time_cpu(fn_a, **kw))
        tb.append(time_cpu(fn_b, **kw))
    return min(ta), min(tb)


def bench(sizes, repeat, min_time, rounds, ops=None):
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        (ours, oi, ot), (ref, ri, rt) = _inputs(n, rng)
        for name, fn in OPS.items():
            if ops and name not in ops:
                continue
            t_ours, t_ref = _interleaved(
                _step(tt, fn, ours, oi, ot, [None]),
                _step(torch, fn, ref, ri, rt, [None]),
                rounds,
                warmup=2,
                repeat=repeat(n),
                min_time=min_time(n),
            )
            rows.append(
                dict(
                    op=name,
                    size=f"{n}x{n}",
                    tinytorch_us=t_ours * 1e6,
                    torch_us=t_ref * 1e6,
                    ratio=t_ours / t_ref,
                )
            )
            print(
                f"{name:>18} {n:5d}  tinytorch {t_ours * 1e6:9.1f} us  torch "
                f"{t_ref * 1e6:9.1f} us  ratio {t_ours / t_ref:5.2f}",
                flush=True,
            )
    # the bare cost of one op call: no grad, 1-element tensors
    a, b = tt.ones(1), tt.ones(1)
    ra, rb = torch.ones(1), torch.ones(1)
    t_ours, t_ref = _interleaved(
        lambda: a + b, lambda: ra + rb, rounds, warmup=100, repeat=400, min_time=min_time(1)
    )
    rows.append(
        dict(
            op="overhead (x + y, fwd only)",
            size="1",
            tinytorch_us=t_ours * 1e6,
            torch_us=t_ref * 1e6,
            ratio=t_ours / t_ref,
        )
    )
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r["size"] for r in rows if r["size"] != "1"))
    ops = list(OPS)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(sizes)
    for k, s in enumerate(sizes):
        ratio = {r["op"]: r["ratio"] for r in rows if r["size"] == s}
        ax.bar(np.arange(len(ops)) + k * width, [ratio[o] for o in ops], width, label=s)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(1.5, color="gray", lw=0.8, ls="--")
    ax.axhline(2.0, color="gray", lw=0.8, ls=":")
    ax.set_xticks(np.arange(len(ops)) + width * (len(sizes) - 1) / 2, ops, rotation=60, ha="right")
    ax.set_ylabel("time ratio tinytorch / PyTorch (fwd+bwd)")
    ax.set_title("core ops on CPU, float32 (lower is better; 1 = PyTorch)")
    ax.legend(title="size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few repeats: checks that it runs")
    p.add_argument(
        "--threads", type=int, default=None, help="threads for both libraries (BLAS and torch)"
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 1024])
    p.add_argument(
        "--ops", nargs="+", choices=list(OPS), default=None, help="only these ops (no result file)"
    )
    args = p.parse_args(argv)
    if args.threads:
        _restart_with_threads(args.threads)
        torch.set_num_threads(args.threads)
    if args.quick:
        rows = bench(args.sizes, repeat=lambda n: 3, min_time=lambda n: 0.0, rounds=1, ops=args.ops)
    else:
        rows = bench(
            args.sizes,
            repeat=lambda n: 50 if n <= 128 else 5,
            min_time=lambda n: 0.05 if n <= 128 else 0.1,
            rounds=5,
            ops=args.ops,
        )
    columns = ["op", "size", "tinytorch_us", "torch_us", "ratio"]
    small = [r["ratio"] for r in rows if r["size"] == f"{min(args.sizes)}x{min(args.sizes)}"]
    big = [r["ratio"] for r in rows if r["size"] == f"{max(args.sizes)}x{max(args.sizes)}"]
    notes = (
        f"float32, forward + backward(gradient); best of 5 alternating rounds of median "
        f"times; torch "
        f"threads {torch.get_num_threads()}. Geometric mean of the ratios: "
        f"{_gmean(small):.2f} at {min(args.sizes)}x{min(args.sizes)}, {_gmean(big):.2f} at "
        f"{max(args.sizes)}x{max(args.sizes)}. Targets: < 2 at the small size (Python "
        f"overhead), < 1.5 at the medium one."
    )
    if args.quick or args.ops:  # a partial run is for checking, not for the record
        print(notes)
        return
    write_results(
        "ops",
        "cpu",
        columns,
        rows,
        notes,
        extra=dict(timing=SAME_PROCESS, geomean_small=_gmean(small), geomean_medium=_gmean(big)),
    )
    plot(rows, RESULTS / "ops_cpu.png")


if __name__ == "__main__":
    main()
