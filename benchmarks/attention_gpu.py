"""Fused attention on the GPU: every kernel version against PyTorch's float32 SDPA.

Shapes of the GPU part 2 issue: B*T = 16k tokens, H*d = 2048, T in 1k..8k, head dim 64 and 128,
causal and not; forward, and forward + backward. Same inputs for both (CuPy arrays shared with
torch through DLPack). TFLOP/s by the FlashAttention counting: forward 4*B*H*T^2*d (halved when
causal), backward 2.5x the forward, so forward + backward is 3.5x. "extra MB" is memory beyond
q, k, v, out (and dq, dk, dv, dout in the backward): ours is the lse and the workspace (O(B*H*T)
except v1's T x T buffers); PyTorch's is its peak allocation above that. Timing: CUDA events,
warm-up, then the median of repeats (fewer at large sizes so the whole run stays short).
v1 (naive, T x T scores in global memory) runs at T = 1k only and v2 (one warp per row) at
T <= 2k: beyond, they take too long (or, for v1, tens of GB). PyTorch picks its own backend
(for float32 on Hopper: the memory-efficient kernel, on tensor cores, TF32 split in 3 terms).

    python -m benchmarks.attention_gpu [--quick]

Also imported by benchmarks/kernels_gpu.py, which calls run(args). Writes
benchmarks/results/attention_gpu_<device>.{md,json,png}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinytorch.bench import time_cuda

HERE = Path(__file__).resolve().parent

TOKENS, WIDTH = 16384, 2048


def flops(B, H, T, d, causal, backward):
    f = 4.0 * B * H * T * T * d / (2 if causal else 1)
    return f * (3.5 if backward else 1.0)


def _time(fn, budget_s=0.25, max_repeat=15):
    """Median seconds of fn() by tinytorch.bench.time_cuda (CUDA events): one timed call after a
    warm-up sizes the repeats to the time budget (at least 3, or 2 when one call takes longer
    than the budget)."""
    first = time_cuda(fn, warmup=1, repeat=1)
    if first >= budget_s:
        return (first + time_cuda(fn, warmup=0, repeat=1)) / 2  # the median of two
    repeat = int(max(3, min(max_repeat, budget_s / max(first, 1e-6))))
    return time_cuda(fn, warmup=0, repeat=repeat)


def _peak_extra_mb(fn, base_bytes):
    """PyTorch: peak bytes allocated during fn() beyond what was allocated before + base."""
    import torch

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return max(0.0, (torch.cuda.max_memory_allocated() - before - base_bytes) / 2**20)


def bench_shape(T, d, causal, versions, quick):
    import cupy as cp
    import torch

    from tinytorch.kernels import attention as A
    from tinytorch.kernels import build

    B, H = TOKENS // T, WIDTH // d
    rng = cp.random.default_rng()
    q, k, v, g = (rng.standard_normal((B, H, T, d), dtype=cp.float32) for _ in range(4))
    tq, tk, tv, tg = (torch.from_dlpack(x) for x in (q, k, v, g))
    nbytes = q.nbytes
    rows = []

    def torch_fwd():
        return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

    tq_, tk_, tv_ = (x.detach().clone().requires_grad_(True) for x in (tq, tk, tv))

    def torch_fwd_bwd():
        out = torch.nn.functional.scaled_dot_product_attention(tq_, tk_, tv_, is_causal=causal)
        return torch.autograd.grad(out, (tq_, tk_, tv_), tg)

    budget = 0.1 if quick else 0.25
    t_fwd = _time(torch_fwd, budget)
    t_bwd = _time(torch_fwd_bwd, budget)
    mem_f = _peak_extra_mb(torch_fwd, nbytes)
    mem_b = _peak_extra_mb(torch_fwd_bwd, 4 * nbytes)
    ref = torch_fwd()
    base = dict(T=T, d=d, causal=causal, B=B, H=H)
    rows.append(
        dict(
            base,
            impl="torch",
            fwd_ms=t_fwd * 1e3,
            fwd_tflops=flops(B, H, T, d, causal, False) / t_fwd / 1e12,
            fwdbwd_ms=t_bwd * 1e3,
            fwdbwd_tflops=flops(B, H, T, d, causal, True) / t_bwd / 1e12,
            fwd_extra_mb=mem_f,
            fwdbwd_extra_mb=mem_b,
            vs_torch_fwd=1.0,
            vs_torch_fwdbwd=1.0,
            max_rel_err=0.0,
        )
    )
    for ver in versions:
        if ver == 1 and T > 1024:
            continue
        if ver == 2 and T > 2048:
            continue
        out, lse = A.forward(q, k, v, causal, version=ver)
        err = float(cp.abs(out - cp.from_dlpack(ref)).max() / cp.abs(cp.from_dlpack(ref)).max())
        del out, lse
        tf = _time(lambda ver=ver: A.forward(q, k, v, causal, version=ver), budget)

        def fb(ver=ver):
            o, lse = A.forward(q, k, v, causal, version=ver)
            return A.backward(q, k, v, o, lse, g, causal, version=ver)

        tb = _time(fb, budget)
        lib = build.load()
        lse_mb = B * H * T * 4 / 2**20
        work_f = lib.attention_workspace_floats(B, H, T, T, d, ver, False) * 4 / 2**20
        work_b = lib.attention_workspace_floats(B, H, T, T, d, ver, True) * 4 / 2**20
        cp.get_default_memory_pool().free_all_blocks()
        rows.append(
            dict(
                base,
                impl=f"v{ver}",
                fwd_ms=tf * 1e3,
                fwd_tflops=flops(B, H, T, d, causal, False) / tf / 1e12,
                fwdbwd_ms=tb * 1e3,
                fwdbwd_tflops=flops(B, H, T, d, causal, True) / tb / 1e12,
                fwd_extra_mb=lse_mb + work_f,
                fwdbwd_extra_mb=lse_mb + work_b,
                vs_torch_fwd=t_fwd / tf,
                vs_torch_fwdbwd=t_bwd / tb,
                max_rel_err=err,
            )
        )
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = sorted({(r["d"], r["causal"]) for r in rows})
    fig, axes = plt.subplots(2, len(combos), figsize=(4 * len(combos), 7), squeeze=False)
    for col, (d, causal) in enumerate(combos):
        for row, key in enumerate(("fwd_tflops", "fwdbwd_tflops")):
            ax = axes[row][col]
            for impl in sorted({r["impl"] for r in rows}):
                pts = sorted(
                    (r["T"], r[key])
                    for r in rows
                    if r["impl"] == impl and r["d"] == d and r["causal"] == causal
                )
                if pts:
                    ax.plot(
                        [p[0] for p in pts],
                        [p[1] for p in pts],
                        "o-",
                        label=impl,
                        lw=2.5 if impl == "torch" else 1.5,
                    )
            ax.set_xscale("log", base=2)
            ax.set_title(
                f"{'forward' if row == 0 else 'forward+backward'}, d={d}"
                f"{', causal' if causal else ''}",
                fontsize=9,
            )
            ax.set_xlabel("T")
            ax.set_ylabel("TFLOP/s")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("fused attention, float32: tinytorch versions vs torch SDPA")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_args(parser):
    parser.add_argument("--quick", action="store_true", help="T in {1k, 4k}, d 64, fewer repeats")
    parser.add_argument("--versions", default="1,2,3,4,5", help="kernel versions to time")
    return parser


def run(args):
    import cupy as cp
    import torch

    quick = getattr(args, "quick", False)
    versions = [int(x) for x in str(getattr(args, "versions", "1,2,3,4,5")).split(",")]
    Ts = (1024, 4096) if quick else (1024, 2048, 4096, 8192)
    dims = (64,) if quick else (64, 128)
    rows = []
    for d in dims:
        for causal in (False, True):
            for T in Ts:
                print(f"T={T} d={d} causal={causal}", flush=True)
                rows.extend(bench_shape(T, d, causal, versions, quick))
                cp.get_default_memory_pool().free_all_blocks()  # the shape's arrays are gone
                torch.cuda.empty_cache()
                _write(rows, quick, final=False)  # so an interrupted run still leaves a table
    _write(rows, quick, final=True)
    return rows


def _write(rows, quick, final):
    import cupy as cp
    import torch

    from tinytorch.bench import RESULTS, device_tag, write_results

    tag = device_tag("cuda")
    columns = [
        "T",
        "d",
        "causal",
        "impl",
        "fwd_ms",
        "fwd_tflops",
        "vs_torch_fwd",
        "fwdbwd_ms",
        "fwdbwd_tflops",
        "vs_torch_fwdbwd",
        "fwd_extra_mb",
        "fwdbwd_extra_mb",
        "max_rel_err",
    ]
    notes = (
        f"B*T = {TOKENS}, H*d = {WIDTH}. TFLOP/s: forward 4*B*H*T^2*d (halved when causal), "
        "forward+backward 3.5x that. vs_torch_*: PyTorch's time / ours (>1 = faster than "
        "PyTorch). extra_mb: memory beyond inputs and outputs. max_rel_err: our forward vs "
        "PyTorch's, max |diff| / max |out|. v1 runs at T = 1k only (its T x T buffers), v2 at "
        f"T <= 2k (slow). torch {torch.__version__}, cupy {cp.__version__}, "
        f"GPU {torch.cuda.get_device_name(0)}."
    )
    if not final:
        notes += " (partial: the run was still going)"
    if quick:
        notes += " Quick mode: T in {1k, 4k}, d 64 only."
    write_results("attention_gpu", tag, columns, rows, notes)
    if final:
        plot(rows, RESULTS / f"attention_gpu_{tag}.png")


def main():
    run(add_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())


if __name__ == "__main__":
    main()
