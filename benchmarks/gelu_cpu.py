"""Fused GELU on the CPU (kernels/gelu.cpp) against the composed NumPy ops and PyTorch.

Forward + backward of the exact GELU through autograd (tinytorch Tensors: F.gelu with the
kernel, and with `tinytorch.kernels.composed()`; torch.nn.functional.gelu), and the raw kernel
once per instruction set this CPU has, on float32 arrays: chapter 07's GPT MLP activation
(12 x 64 x 512) and larger ones. Median of repeats after a warm-up, same inputs for all.

    python benchmarks/gelu_cpu.py [--quick]

Writes benchmarks/results/gelu_cpu_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

SHAPES = [(12, 64, 512), (1024, 1024), (4096, 1024)]


def bench(shape, repeat):
    from tinytorch.bench import import_torch

    torch = import_torch()  # PyTorch's own OpenMP defaults (tinytorch.bench)

    import tinytorch as tt
    from tinytorch import kernels
    from tinytorch.bench import time_cpu
    from tinytorch.kernels import gelu as G

    rng = np.random.default_rng()
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    t, gt = tt.tensor(x, requires_grad=True), tt.tensor(g)
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g)

    def ours():
        t.grad = None
        tt.nn.functional.gelu(t).backward(gt)

    def theirs():
        tx.grad = None
        torch.nn.functional.gelu(tx).backward(tg)

    row = dict(shape="x".join(map(str, shape)), elements=x.size)
    row["fused_ms"] = time_cpu(ours, warmup=2, repeat=repeat) * 1e3
    with kernels.composed():
        row["composed_ms"] = time_cpu(ours, warmup=2, repeat=repeat) * 1e3
    row["torch_ms"] = time_cpu(theirs, warmup=2, repeat=repeat) * 1e3

    def raw():
        return G.backward(x, g), G.forward(x)

    for isa in kernels.cpu_isas():
        with kernels.using_cpu_isa(isa):
            row[f"raw_{isa}_ms"] = time_cpu(raw, warmup=2, repeat=repeat) * 1e3
    row["vs_composed"] = row["composed_ms"] / row["fused_ms"]
    row["vs_torch"] = row["torch_ms"] / row["fused_ms"]
    return row


def main():
    import os

    from tinytorch.bench import import_torch

    torch = import_torch()  # PyTorch's own OpenMP defaults (tinytorch.bench)

    from tinytorch import kernels
    from tinytorch.bench import SAME_PROCESS, write_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the first shape, 5 repeats")
    args = ap.parse_args()
    shapes = SHAPES[:1] if args.quick else SHAPES
    rows = [bench(s, 5 if args.quick else 30) for s in shapes]
    isas = kernels.cpu_isas()
    columns = ["shape", "elements", "fused_ms", "composed_ms", "torch_ms", "vs_composed"]
    columns += ["vs_torch"] + [f"raw_{i}_ms" for i in isas]
    notes = (
        "Forward + backward of the exact GELU, float32, milliseconds (median). fused = "
        "tinytorch's F.gelu with the kernel (autograd included); composed = the same with "
        "tinytorch.kernels.composed() (NumPy ops); torch = torch.nn.functional.gelu + backward. "
        "vs_composed, vs_torch: their time / fused (> 1: the kernel is faster). raw_<isa>_ms: "
        "the kernel's forward + backward on NumPy arrays with that instruction set's copy "
        f"(the library uses {kernels.cpu_isa()} here). OpenMP threads: "
        f"{os.environ.get('OMP_NUM_THREADS', 'all')} of {os.cpu_count()} cores; torch threads: "
        f"{torch.get_num_threads()}."
    )
    write_results("gelu_cpu", "cpu", columns, rows, notes, extra={"timing": SAME_PROCESS})


if __name__ == "__main__":
    main()
