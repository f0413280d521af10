"""Fused LayerNorm on the CPU: the C++/OpenMP kernel vs the NumPy composition and PyTorch CPU.

For each row length C in {768, 1024, 4096, 8192} (N = 4M / C rows, 16 MB per (N, C) array, more
than the last-level cache of a small machine), forward and forward+backward of:
    kernel vK   tinytorch.kernels.layernorm.forward/backward, raw NumPy arrays (each CPU version)
    composed    F.layer_norm through tinytorch's tensor ops (NumPy), with autograd
    fused       F.layer_norm through the autograd Function (what the library uses on CPU)
    torch       torch.nn.functional.layer_norm forward + torch.autograd.grad, same inputs
Timing: warm-up, then the median of repeats (wall clock); bwd_ms = fwdbwd_ms - fwd_ms.
GB/s counts the bytes a fused implementation must move (see kernels_common.py). vs_torch is
PyTorch's forward+backward time / ours (> 1: faster than PyTorch). max_rel_err compares y, dx,
dweight and dbias with PyTorch's (normwise).

    python benchmarks/kernels_cpu.py [--quick] [--threads N]

Writes benchmarks/results/kernels_cpu_cpu.{md,json,png}.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

CS = (768, 1024, 4096, 8192)


def add_args(parser):
    parser.add_argument("--quick", action="store_true", help="1M elements per array, 5 repeats")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    parser.add_argument("--repeat", type=int, default=0, help="timed repeats (default 20)")
    return parser


def bench_C(C, N, repeat, warmup):
    import numpy as np

    from tinytorch.bench import import_torch

    torch = import_torch()  # PyTorch's own OpenMP defaults (tinytorch.bench)

    from benchmarks.kernels_common import (
        kernel_calls,
        library_rows,
        make_row,
        rel_err,
        torch_calls,
    )
    from tinytorch.bench import time_cpu
    from tinytorch.kernels import layernorm as L

    rng = np.random.default_rng()
    x = (rng.standard_normal((N, C)) * 2 + 0.5).astype(np.float32)
    w = (1 + 0.5 * rng.standard_normal(C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    dy = rng.standard_normal((N, C)).astype(np.float32)

    # PyTorch, the reference (same buffers through from_numpy)
    xr, wr, br = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    dyr = torch.from_numpy(dy)

    t_fwd, t_fwdbwd = torch_calls(xr, wr, br, dyr, C)

    ref_y = t_fwd().detach().numpy()
    ref_grads = [g.numpy() for g in t_fwdbwd()]
    t_f = time_cpu(t_fwd, warmup, repeat)
    t_fb = time_cpu(t_fwdbwd, warmup, repeat)
    rows = [make_row(C, N, "torch", t_f, t_fb - t_f, t_fb, t_fb, 0.0)]

    def errs(y, grads):
        return max(rel_err(y, ref_y), *(rel_err(g, r) for g, r in zip(grads, ref_grads)))

    # the raw kernels, every CPU version
    for v in L.CPU_VERSIONS:
        k_fwd, k_fwdbwd = kernel_calls(x, w, b, dy, v)
        y, grads = k_fwdbwd()
        f, fb = time_cpu(k_fwd, warmup, repeat), time_cpu(k_fwdbwd, warmup, repeat)
        rows.append(make_row(C, N, f"kernel v{v}", f, fb - f, fb, t_fb, errs(y, grads)))

    # through the library: F.layer_norm with autograd, fused Function vs composed tensor ops
    rows += library_rows(
        C,
        N,
        (x, w, b, dy),
        "cpu",
        time_cpu,
        warmup,
        repeat,
        t_fb,
        errs,
        ("F.layer_norm fused", "F.layer_norm composed"),
    )
    return rows


def run(args):
    threads = args.threads or os.cpu_count()
    from tinytorch.bench import import_torch

    torch = import_torch()  # PyTorch's own OpenMP defaults (tinytorch.bench)

    torch.set_num_threads(threads)
    from benchmarks.kernels_common import COLUMNS, plot
    from tinytorch.bench import RESULTS, SAME_PROCESS, write_results
    from tinytorch.kernels import build

    build.load(verbose=True)
    elems = (1 << 20) if args.quick else (1 << 22)
    repeat = args.repeat or (5 if args.quick else 20)
    rows = []
    for C in CS:
        N = elems // C
        print(f"C={C} N={N}", flush=True)
        rows += bench_C(C, N, repeat, warmup=2)
    notes = (
        f"CPU threads: {threads} (OpenMP and torch). N = {elems} / C rows, float32. Times are "
        "medians of wall-clock repeats after warm-up; bwd_ms = fwdbwd_ms - fwd_ms. fwdbwd_GBps "
        "counts the bytes a fused implementation must move: (5*N*C + 5*C + 4*N) * 4 "
        "(benchmarks/kernels_common.py). vs_torch = PyTorch's forward+backward time / ours "
        "(> 1: faster). 'F.layer_norm fused/composed' go through tinytorch Tensors and autograd "
        "(tinytorch.kernels.set_fused(True/False)); 'kernel vK' calls the raw kernel on NumPy "
        "arrays. max_rel_err: y, dx, dweight, dbias vs PyTorch, max |diff| / max |ref|."
    )
    if args.quick:
        notes += " Quick mode (1M elements, 5 repeats)."
    write_results(
        "kernels_cpu",
        "cpu",
        COLUMNS,
        rows,
        notes,
        extra={"threads": threads, "timing": SAME_PROCESS},
    )
    title = f"LayerNorm forward+backward, CPU, {threads} threads"
    plot(rows, RESULTS / "kernels_cpu_cpu.png", title)
    return rows


def main():
    args = add_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args()
    if args.threads:  # OpenMP reads this once, when the kernel module loads
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    run(args)


if __name__ == "__main__":
    main()
