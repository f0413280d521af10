"""Chapter 12: benchmarks and profiling - this machine's roofs, then the whole suite, one report.

    python -m tinytorch.course run 12             # roofline + the full CPU suite (~10-15 min)
    python -m tinytorch.course run 12 --quick     # tiny sizes (CI): checks that it all runs
    python -m tinytorch.course run 12 --record    # results into benchmarks/results/

1. The roofline: this machine's memory bandwidth (a large copy) and compute roof (a large
   float32 matmul), then LayerNorm, attention and matmul forward, each timed in tinytorch and
   PyTorch (median after warm-up, with the spread), next to the least time the roofline allows
   for their bytes and FLOPs (tinytorch.roofline). Writes roofline.png and roofline.json.
2. The suite (`python -m benchmarks.suite`): every benchmark that fits this machine, each in
   its own process, tinytorch against PyTorch in the same run; then chapter 07's GPT step under
   tinytorch.profiler; one report, suite/report_<device>.md with its PNGs and a Chrome trace.
   The suite measures the repository's package (it runs from the repository's root).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import tinytorch as tt
import tinytorch.nn.functional as F
from tinytorch import roofline
from tinytorch.bench import import_torch, machine, record, time_cpu
from tinytorch.chapter import chapter_args

REPO = Path(__file__).resolve().parents[2]


def timed(fn, repeat):
    """Median seconds of fn() after a warm-up, and the spread (lowest, highest call)."""
    samples = []
    median = time_cpu(fn, warmup=3, repeat=repeat, samples=samples)
    return median, min(samples), max(samples)


def cases(quick):
    """(op, sizes) the roofline section times: LayerNorm over arrays larger than the caches,
    chapter 07's attention and longer sequences, and square matmuls."""
    if quick:
        return [
            ("layer_norm", dict(N=1024, C=256)),
            ("attention", dict(B=12, H=4, T=64, D=32, causal=True)),
            ("matmul", dict(M=256, K=256, N=256)),
        ]
    return [
        ("layer_norm", dict(N=4096, C=1024)),
        ("layer_norm", dict(N=16384, C=768)),
        ("attention", dict(B=12, H=4, T=64, D=32, causal=True)),
        ("attention", dict(B=4, H=8, T=512, D=64, causal=True)),
        ("matmul", dict(M=768, K=128, N=512)),
        ("matmul", dict(M=1024, K=1024, N=1024)),
    ]


def make_calls(op, s, rng):
    """The same float32 forward call in tinytorch and in PyTorch (None without PyTorch)."""
    try:
        torch = import_torch()
    except ImportError:
        torch = None
    if op == "layer_norm":
        arrays = [rng.standard_normal(shape, dtype=np.float32) for shape in
                  ((s["N"], s["C"]), (s["C"],), (s["C"],))]  # fmt: skip
        x, w, b = (tt.tensor(a) for a in arrays)
        ours = lambda: F.layer_norm(x, (s["C"],), w, b)  # noqa: E731
        if torch:
            tx, tw, tb = (torch.from_numpy(a) for a in arrays)
            theirs = lambda: torch.nn.functional.layer_norm(tx, (s["C"],), tw, tb)  # noqa: E731
    elif op == "attention":
        shape = (s["B"], s["H"], s["T"], s["D"])
        arrays = [rng.standard_normal(shape, dtype=np.float32) for _ in range(3)]
        q, k, v = (tt.tensor(a) for a in arrays)
        ours = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=s["causal"])  # noqa: E731
        if torch:
            tq, tk, tv = (torch.from_numpy(a) for a in arrays)
            sdpa = torch.nn.functional.scaled_dot_product_attention
            theirs = lambda: sdpa(tq, tk, tv, is_causal=s["causal"])  # noqa: E731
    else:
        a = rng.standard_normal((s["M"], s["K"]), dtype=np.float32)
        b = rng.standard_normal((s["K"], s["N"]), dtype=np.float32)
        ta, tb = tt.tensor(a), tt.tensor(b)
        ours = lambda: ta @ tb  # noqa: E731
        if torch:
            pa, pb = torch.from_numpy(a), torch.from_numpy(b)
            theirs = lambda: pa @ pb  # noqa: E731
    return ours, (theirs if torch else None)


def torch_roofs(nbytes, n, repeat):
    """PyTorch's copy bandwidth (bytes read + written per second; it copies with all its
    threads) and float32 matmul FLOP/s, or None without PyTorch."""
    try:
        torch = import_torch()
    except ImportError:
        return None
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    t_copy = time_cpu(lambda: dst.copy_(src), warmup=2, repeat=repeat)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    t_mm = time_cpu(lambda: torch.matmul(a, b, out=out), warmup=2, repeat=repeat)
    return 2 * nbytes / t_copy, 2 * n**3 / t_mm


def roofline_section(args):
    """Measure the two roofs, then time each case against the least time they allow."""
    nbytes, n, repeat = (32 << 20, 512, 3) if args.quick else (512 << 20, 2048, 10)
    bandwidth = roofline.measure_bandwidth(nbytes, repeat)
    peak = roofline.measure_peak_flops(n, repeat)
    print(
        f"NumPy: copy {bandwidth / 1e9:.1f} GB/s, float32 matmul {peak / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    theirs = torch_roofs(nbytes, n, repeat)
    if theirs:  # the roofs are what the machine can do: the better of the two libraries
        print(f"PyTorch: copy {theirs[0] / 1e9:.1f} GB/s, matmul {theirs[1] / 1e9:.1f} GFLOP/s")
        bandwidth, peak = max(bandwidth, theirs[0]), max(peak, theirs[1])
    print(
        f"roofs: memory bandwidth {bandwidth / 1e9:.1f} GB/s, compute {peak / 1e9:.1f} "
        f"GFLOP/s; ridge point {peak / bandwidth:.1f} FLOPs/byte",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    rows = []
    repeat = 5 if args.quick else 20
    for op, s in cases(args.quick):
        nbytes = roofline.bytes_moved(op, **s)
        flops = roofline.flop_count(op, **s)
        bound = roofline.roofline_time(nbytes, flops, bandwidth, peak)
        ours, theirs = make_calls(op, s, rng)
        with tt.no_grad():
            t, lo, hi = timed(ours, repeat)
        row = dict(
            op=op,
            sizes=" ".join(f"{k}={v}" for k, v in s.items()),
            MB=nbytes / 2**20,
            MFLOP=flops / 1e6,
            intensity=flops / nbytes,
            bound="memory" if nbytes / bandwidth > flops / peak else "compute",
            roofline_ms=bound * 1e3,
            tinytorch_ms=t * 1e3,
            tinytorch_spread_ms=f"{lo * 1e3:.3g}-{hi * 1e3:.3g}",
            tinytorch_of_roofline=bound / t,
        )
        if theirs is not None:
            tp, _, _ = timed(theirs, repeat)
            row.update(torch_ms=tp * 1e3, torch_of_roofline=bound / tp, ratio=t / tp)
        rows.append(row)
        print(
            f"{op:10s} {row['sizes']:30s} {row['bound'] + '-bound':14s}: roofline "
            f"{row['roofline_ms']:.3f} ms, tinytorch {row['tinytorch_ms']:.3f} ms "
            f"({row['tinytorch_spread_ms']}), PyTorch {row.get('torch_ms', float('nan')):.3f} ms",
            flush=True,
        )
    plot_roofline(rows, bandwidth, peak, args.out / "roofline.png")
    info = dict(bandwidth_GBps=bandwidth / 1e9, peak_GFLOPs=peak / 1e9, rows=rows)
    (args.out / "roofline.json").write_text(json.dumps(info, indent=2))
    return rows, bandwidth, peak


def plot_roofline(rows, bandwidth, peak, path):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = np.logspace(-2, 3, 200)
    ax.plot(xs, np.minimum(peak, bandwidth * xs) / 1e9, "k-", label="roofline (this machine)")
    for key, marker, name in (("tinytorch_ms", "o", "tinytorch"), ("torch_ms", "x", "PyTorch")):
        pts = [(r["intensity"], r["MFLOP"] / r[key]) for r in rows if key in r]  # MFLOP/ms=GFLOP/s
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=name, zorder=3)
    for r in rows:
        ax.annotate(r["op"], (r["intensity"], r["MFLOP"] / r["tinytorch_ms"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("roofline: LayerNorm, attention, matmul (forward, float32)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_suite(args) -> int:
    """benchmarks/suite.py in its own process, from the repository's root."""
    cmd = [sys.executable, "-m", "benchmarks.suite", "--out", str(args.out / "suite")]
    cmd += ["--quick"] * args.quick + ["--record"] * args.record
    cmd += ["--only", *args.only] if args.only else []
    print("running:", " ".join(cmd), flush=True)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.call(cmd, cwd=REPO, env=env)


def main():
    p = chapter_args(__file__, "Chapter 12: benchmarks and profiling")
    p.add_argument("--no-suite", action="store_true", help="the roofline section only")
    p.add_argument("--only", nargs="+", help="run only these benchmarks of the suite")
    args = p.parse_args()
    info = machine()
    print(
        f"machine: {info.get('cpu_model')}, {info.get('cpu_count')} CPUs, numpy "
        f"{info.get('numpy')}, torch {info.get('torch')} ({info.get('torch_threads')} threads)"
    )
    rows, bandwidth, peak = roofline_section(args)
    if args.record:
        ratios = [r["ratio"] for r in rows if "ratio" in r]
        notes = (
            f"Roofs: memory bandwidth {bandwidth / 1e9:.1f} GB/s (copy of 512 MB, bytes read + "
            f"written), compute {peak / 1e9:.1f} GFLOP/s (float32 2048^3 matmul), each the "
            "better of NumPy's and PyTorch's. Forward calls, float32, median of 20 after 3 "
            "warm-up; roofline_ms = max(bytes / bandwidth, FLOPs / peak) with "
            "tinytorch.roofline's counts; "
            "*_of_roofline = roofline_ms / measured (1.0 = at the roof). ratio = tinytorch / "
            f"PyTorch time (median {statistics.median(ratios) if ratios else float('nan'):.2f})."
        )
        columns = ["op", "sizes", "bound", "intensity", "roofline_ms", "tinytorch_ms"]
        columns += ["tinytorch_spread_ms", "torch_ms", "ratio", "tinytorch_of_roofline"]
        columns += ["torch_of_roofline"]
        extra = dict(bandwidth_GBps=bandwidth / 1e9, peak_GFLOPs=peak / 1e9)
        record("ch12_benchmarks", "cpu", columns, rows, notes, extra, [args.out / "roofline.png"])
    if args.no_suite:
        return
    rc = run_suite(args)
    if rc != 0:
        sys.exit(f"the benchmark suite failed (exit {rc}); see {args.out / 'suite'}")


if __name__ == "__main__":
    main()
