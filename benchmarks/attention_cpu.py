"""Fused attention on the CPU: the C++/OpenMP kernels against the composed NumPy path and torch.

Three implementations of softmax(Q K^T / sqrt(d) + mask) V, forward and forward + backward, on
the same float32 inputs (B, H, T, d):
- fused:    tinytorch.kernels.attention.attention (kernels/attention.cpp, default
            version),
- composed: tinytorch's composed path (matmul, mask, softmax, matmul on NumPy arrays: what
            F.scaled_dot_product_attention runs with `tinytorch.kernels.composed()`),
- torch:    torch.nn.functional.scaled_dot_product_attention on the CPU.
Sizes: the GPT of chapter 7 (B 12, H 4, T 64, d 32, causal) and larger ones. Median of repeats
after a warm-up; OpenMP and torch use all cores. Then every CPU kernel version (1 naive, 2 row
at a time, 3 tiled) on raw arrays at two sizes: the table of chapter 11.

    python benchmarks/attention_cpu.py [--quick]

Writes benchmarks/results/attention_cpu_cpu.{md,json,png} and attention_cpu_versions_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

SIZES = [  # (B, H, T, d, causal)
    (12, 4, 64, 32, True),  # the chapter 7 GPT
    (12, 4, 64, 32, False),
    (8, 8, 256, 64, True),
    (4, 8, 512, 64, True),
    (2, 8, 1024, 64, True),
    (2, 8, 1024, 64, False),
    (1, 8, 2048, 128, True),
]


def bench(B, H, T, d, causal, quick):
    from tinytorch.bench import import_torch

    torch = import_torch()  # PyTorch's own OpenMP defaults (tinytorch.bench)

    import tinytorch as tt
    from tinytorch.bench import time_cpu
    from tinytorch.kernels import attention as A
    from tinytorch.nn.functional_attention import attention_with_weights

    rng = np.random.default_rng()
    q, k, v, g = (rng.standard_normal((B, H, T, d)).astype(np.float32) for _ in range(4))
    repeat = 3 if quick else 7
    ts = [tt.tensor(x, requires_grad=True) for x in (q, k, v)]
    gt = tt.tensor(g)

    def fused():
        return A.attention(*ts, is_causal=causal)

    def composed():
        return attention_with_weights(*ts, is_causal=causal)[0]

    def with_backward(fn):
        def run():
            for t in ts:
                t.grad = None
            fn().backward(gt)

        return run

    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tg = torch.tensor(g)

    def torch_fwd():
        with torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

    def torch_fwd_bwd():
        out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
        return torch.autograd.grad(out, (tq, tk, tv), tg)

    with tt.no_grad():
        t_fused = time_cpu(fused, warmup=1, repeat=repeat)
        t_comp = time_cpu(composed, warmup=1, repeat=repeat)
        err = float(np.abs(fused().data - composed().data).max())
    row = dict(
        B=B,
        H=H,
        T=T,
        d=d,
        causal=causal,
        fused_fwd_ms=t_fused * 1e3,
        composed_fwd_ms=t_comp * 1e3,
        torch_fwd_ms=time_cpu(torch_fwd, warmup=1, repeat=repeat) * 1e3,
        fused_fwdbwd_ms=time_cpu(with_backward(fused), warmup=1, repeat=repeat) * 1e3,
        composed_fwdbwd_ms=time_cpu(with_backward(composed), warmup=1, repeat=repeat) * 1e3,
        torch_fwdbwd_ms=time_cpu(torch_fwd_bwd, warmup=1, repeat=repeat) * 1e3,
        max_abs_diff=err,
    )
    row["speedup_vs_composed"] = row["composed_fwdbwd_ms"] / row["fused_fwdbwd_ms"]
    row["vs_torch"] = row["torch_fwdbwd_ms"] / row["fused_fwdbwd_ms"]
    return row


VERSION_SIZES = [(12, 4, 64, 32, True), (4, 8, 256, 64, True), (2, 8, 1024, 64, False)]


def bench_versions(B, H, T, d, causal, quick):
    """Forward and forward+backward of each CPU version on raw arrays, with GFLOP/s; the tiled
    version once per instruction set this CPU can run it with (16-, 8-, 4-float vectors)."""
    from tinytorch import kernels
    from tinytorch.bench import time_cpu
    from tinytorch.kernels import attention as A

    rng = np.random.default_rng()
    q, k, v, g = (rng.standard_normal((B, H, T, d)).astype(np.float32) for _ in range(4))
    fl = 4.0 * B * H * T * T * d / (2 if causal else 1)
    rows = []
    runs = [(ver, "-") for ver in A.CPU_VERSIONS if ver != 3]
    runs += [(3, i) for i in kernels.cpu_isas()]
    for ver, isa in runs:

        def fwd(ver=ver):
            return A.forward(q, k, v, causal, version=ver)

        def fwd_bwd(ver=ver):
            o, lse = A.forward(q, k, v, causal, version=ver)
            return A.backward(q, k, v, o, lse, g, causal, version=ver)

        with kernels.using_cpu_isa(isa) if isa != "-" else contextlib.nullcontext():
            tf = time_cpu(fwd, warmup=1, repeat=3 if quick else 7)
            tb = time_cpu(fwd_bwd, warmup=1, repeat=3 if quick else 7)
        rows.append(
            dict(
                B=B,
                H=H,
                T=T,
                d=d,
                causal=causal,
                version=ver,
                isa=isa,
                fwd_ms=tf * 1e3,
                fwd_gflops=fl / tf / 1e9,
                fwdbwd_ms=tb * 1e3,
                fwdbwd_gflops=3.5 * fl / tb / 1e9,
            )
        )
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"B{r['B']} H{r['H']}\nT{r['T']} d{r['d']}{' c' if r['causal'] else ''}" for r in rows
    ]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, phase in zip(axes, ("fwd", "fwdbwd")):
        for i, impl in enumerate(("fused", "composed", "torch")):
            ax.bar(x + (i - 1) * 0.27, [r[f"{impl}_{phase}_ms"] for r in rows], 0.27, label=impl)
        ax.set_yscale("log")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel("ms (log)")
        ax.set_title("forward" if phase == "fwd" else "forward + backward")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend()
    fig.suptitle("attention on the CPU: fused C++ kernel vs composed NumPy vs torch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first three sizes, 3 repeats")
    args = parser.parse_args()
    import os

    from tinytorch.bench import import_torch

    torch = import_torch()  # PyTorch's own OpenMP defaults (tinytorch.bench)

    from tinytorch import kernels
    from tinytorch.bench import RESULTS, SAME_PROCESS, write_results

    sizes = SIZES[:3] if args.quick else SIZES
    rows = []
    for size in sizes:
        rows.append(bench(*size, args.quick))
        r = rows[-1]
        print(
            f"{size}: fused {r['fused_fwdbwd_ms']:.2f} ms, composed "
            f"{r['composed_fwdbwd_ms']:.2f} ms, torch {r['torch_fwdbwd_ms']:.2f} ms "
            f"(forward + backward)",
            flush=True,
        )
    columns = [
        "B",
        "H",
        "T",
        "d",
        "causal",
        "fused_fwd_ms",
        "composed_fwd_ms",
        "torch_fwd_ms",
        "fused_fwdbwd_ms",
        "composed_fwdbwd_ms",
        "torch_fwdbwd_ms",
        "speedup_vs_composed",
        "vs_torch",
        "max_abs_diff",
    ]
    threads = (
        f"OpenMP threads: {os.environ.get('OMP_NUM_THREADS', 'all')} of {os.cpu_count()} cores; "
        f"torch threads: {torch.get_num_threads()}."
    )
    notes = (
        f"fused = tinytorch.kernels.attention (C++/OpenMP, default version, {kernels.cpu_isa()}); "
        "composed = "
        "tinytorch's NumPy tensor-op path; torch = torch SDPA on the CPU. "
        "speedup_vs_composed and vs_torch: their forward+backward time / the fused one "
        "(>1 = fused is faster). " + threads
    )
    write_results("attention_cpu", "cpu", columns, rows, notes, extra={"timing": SAME_PROCESS})
    plot(rows, RESULTS / "attention_cpu_cpu.png")
    vrows = [r for size in VERSION_SIZES for r in bench_versions(*size, args.quick)]
    write_results(
        "attention_cpu_versions",
        "cpu",
        [
            "B",
            "H",
            "T",
            "d",
            "causal",
            "version",
            "isa",
            "fwd_ms",
            "fwd_gflops",
            "fwdbwd_ms",
            "fwdbwd_gflops",
        ],
        vrows,
        "Every CPU kernel version on raw NumPy arrays (kernels/attention.cpp): 1 naive "
        "(the T x T scores per head), 2 one query row at a time (online softmax), 3 "
        "tiled (32 queries x 64 keys, vectorized), once per instruction set this CPU has "
        "(isa: avx512 = 16-float vectors, avx2 = 8, base = SSE2, 4; the library uses the "
        f"first, here {kernels.cpu_isa()}). GFLOP/s by the FlashAttention "
        "counting (forward 4*B*H*T^2*d, halved when causal; forward+backward 3.5x). " + threads,
    )


if __name__ == "__main__":
    main()
