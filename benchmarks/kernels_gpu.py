"""Fused LayerNorm on the GPU: every CUDA kernel version vs torch.nn.functional.layer_norm.

N = 16384 rows, C in {768, 1024, 4096, 8192}, float32 (each (N, C) array is 50 to 537 MB, so
x, y, dy, dx together are well beyond the 50 MB L2 of an H100). For each C, forward and
forward+backward of:
    v1 .. vN        tinytorch.kernels.layernorm.forward/backward on CuPy arrays (every version)
    F fused         tinytorch's F.layer_norm with autograd (the Function, default version)
    F composed      tinytorch's F.layer_norm through CuPy tensor ops (set_fused(False))
    torch           torch.nn.functional.layer_norm + torch.autograd.grad, the same buffers
                    (shared through DLPack)
Timing: CUDA events on CuPy's current stream (PyTorch runs on the same legacy default stream),
warm-up, then the median of --repeat (default 50) repeats; bwd_ms = fwdbwd_ms - fwd_ms. GB/s
counts the bytes a fused implementation must move, (5*N*C + 5*C + 4*N) * 4 (kernels_common.py).
The device-to-device copy bandwidth (cudaMemcpyAsync of 1 GiB, bytes read + written) is
measured too: the targets are the best version >= 1.25x PyTorch's forward+backward and >= 75%
of the copy bandwidth.

    python benchmarks/kernels_gpu.py [--quick] [--repeat 50] [--no-attention]

Writes benchmarks/results/kernels_gpu_<device>.{md,json,png}; then, unless --no-attention,
runs the attention benchmark (benchmarks/attention_gpu.py) too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent

N_ROWS = 16384
CS = (768, 1024, 4096, 8192)


def add_args(parser):
    parser.add_argument("--quick", action="store_true", help="C in {768, 4096}, 10 repeats")
    parser.add_argument("--repeat", type=int, default=0, help="timed repeats (default 50)")
    parser.add_argument("--versions", default="", help="CUDA versions to time (default: all)")
    parser.add_argument("--no-attention", action="store_true", help="skip attention_gpu.py")
    parser.add_argument(
        "--attention-quick", action="store_true", help="run attention_gpu.py in its --quick mode"
    )
    return parser


def copy_bandwidth(repeat):
    """Device-to-device copy, GB/s counting bytes read and written (1 GiB buffers)."""
    import cupy as cp

    from tinytorch.bench import time_cuda

    src = cp.ones(1 << 28, cp.float32)
    dst = cp.empty_like(src)
    t = time_cuda(lambda: dst.data.copy_from_device_async(src.data, src.nbytes), 3, max(10, repeat))
    return 2 * (1 << 30) / t / 1e9


def bench_C(C, N, versions, repeat):
    import cupy as cp
    import torch

    from benchmarks.kernels_common import kernel_calls, library_rows, make_row, torch_calls
    from tinytorch.bench import time_cuda

    x = cp.random.standard_normal((N, C), dtype=cp.float32) * 2 + 0.5
    w = 1 + 0.5 * cp.random.standard_normal(C, dtype=cp.float32)
    b = cp.random.standard_normal(C, dtype=cp.float32)
    dy = cp.random.standard_normal((N, C), dtype=cp.float32)
    warmup = 5

    xr, wr, br = (torch.from_dlpack(a).requires_grad_() for a in (x, w, b))
    dyr = torch.from_dlpack(dy)

    t_fwd, t_fwdbwd = torch_calls(xr, wr, br, dyr, C)

    with torch.no_grad():
        ref_y = cp.from_dlpack(t_fwd().detach())
    ref_grads = [cp.from_dlpack(g) for g in t_fwdbwd()]
    t_f = time_cuda(t_fwd, warmup, repeat)
    t_fb = time_cuda(t_fwdbwd, warmup, repeat)
    rows = [make_row(C, N, "torch", t_f, t_fb - t_f, t_fb, t_fb, 0.0)]
    print(f"  torch       fwd+bwd {t_fb * 1e3:8.3f} ms", flush=True)

    def errs(y, grads):
        # on the GPU: copying 0.5 GB arrays to the host for each check would dominate the run
        pairs = [(y, ref_y), *zip(grads, ref_grads)]
        return max(float(cp.abs(a - r).max() / cp.abs(r).max()) for a, r in pairs)

    for v in versions:
        try:
            k_fwd, k_fwdbwd = kernel_calls(x, w, b, dy, v)
            y, grads = k_fwdbwd()
            err = errs(y, grads)
            reps = repeat if v != 1 else max(5, repeat // 5)  # v1 (a thread per row) is slow
            f, fb = time_cuda(k_fwd, 2, reps), time_cuda(k_fwdbwd, 2, reps)
            rows.append(make_row(C, N, f"v{v}", f, fb - f, fb, t_fb, err))
            print(f"  v{v}          fwd+bwd {fb * 1e3:8.3f} ms  err {err:.1e}", flush=True)
        except Exception as e:  # a failing version must not hide the others' numbers
            print(f"  v{v} FAILED: {type(e).__name__}: {e}", flush=True)
            rows.append({"C": C, "N": N, "impl": f"v{v}", "max_rel_err": f"FAILED: {e}"})

    rows += library_rows(
        C, N, (x, w, b, dy), "cuda", time_cuda, 2, repeat, t_fb, errs, ("F fused", "F composed")
    )
    return rows


def free_memory():
    """Give the finished shape's buffers back (CuPy's pool and PyTorch's cache)."""
    import cupy as cp
    import torch

    cp.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()


def summary(rows, copy_gbs):
    """The targets: best version vs PyTorch (>= 1.25x) and vs the copy bandwidth (>= 75%)."""
    lines = []
    for C in sorted({r["C"] for r in rows}):
        ours = [r for r in rows if r["C"] == C and r["impl"].startswith("v") and "fwdbwd_ms" in r]
        if not ours:
            continue
        best = min(ours, key=lambda r: r["fwdbwd_ms"])
        lines.append(
            f"- C={C}: best {best['impl']} {best['fwdbwd_ms']:.3f} ms, {best['vs_torch']:.2f}x "
            f"PyTorch (target 1.25x), {best['fwdbwd_GBps']:.0f} GB/s = "
            f"{100 * best['fwdbwd_GBps'] / copy_gbs:.0f}% of the copy bandwidth (target 75%)"
        )
    return "\n".join(lines)


def write(rows, copy_gbs, quick, final):
    import cupy as cp
    import torch

    from benchmarks.kernels_common import COLUMNS, plot
    from tinytorch.bench import RESULTS, device_tag, write_results

    tag = device_tag("cuda")
    notes = (
        f"N = {N_ROWS} rows, float32. Device-to-device copy: {copy_gbs:.0f} GB/s (1 GiB "
        "cudaMemcpyAsync, bytes read + written). Times: CUDA events, median of repeats after "
        "warm-up (v1: a fifth of the repeats); bwd_ms = fwdbwd_ms - fwd_ms. fwdbwd_GBps counts "
        "the bytes a fused implementation must move, (5*N*C + 5*C + 4*N) * 4 "
        "(benchmarks/kernels_common.py). vs_torch = PyTorch's forward+backward time / ours "
        "(> 1: faster). max_rel_err: y, dx, dweight, dbias vs PyTorch's, max |diff| / max |ref|. "
        f"torch {torch.__version__}, cupy {cp.__version__}, GPU {torch.cuda.get_device_name(0)}."
        "\n\n" + summary(rows, copy_gbs)
    )
    if quick:
        notes += "\n\nQuick mode: fewer sizes and repeats."
    if not final:
        notes += "\n\n(partial: the run was still going)"
    write_results("kernels_gpu", tag, COLUMNS, rows, notes, extra={"copy_GBps": copy_gbs})
    if final:
        timed = [r for r in rows if "fwdbwd_GBps" in r]
        plot(
            timed,
            RESULTS / f"kernels_gpu_{tag}.png",
            f"LayerNorm forward+backward, {torch.cuda.get_device_name(0)}, N={N_ROWS}",
            hlines=[(copy_gbs, "D2D copy"), (0.75 * copy_gbs, "75% of copy")],
        )


def run(args):
    from tinytorch.kernels import build
    from tinytorch.kernels import layernorm as L

    lib = build.load(verbose=True)
    if not getattr(lib, "with_cuda", False):
        raise SystemExit("kernels_gpu: the kernel module was built without CUDA (no nvcc/GPU?)")
    quick = getattr(args, "quick", False)
    repeat = args.repeat or (10 if quick else 50)
    versions = (
        [int(v) for v in args.versions.split(",")] if args.versions else list(L.CUDA_VERSIONS)
    )
    copy_gbs = copy_bandwidth(repeat)
    free_memory()
    print(f"device-to-device copy: {copy_gbs:.0f} GB/s", flush=True)
    rows = []
    for C in (768, 4096) if quick else CS:
        print(f"C={C} N={N_ROWS}", flush=True)
        rows += bench_C(C, N_ROWS, versions, repeat)
        free_memory()
        write(rows, copy_gbs, quick, final=False)
    write(rows, copy_gbs, quick, final=True)
    if not getattr(args, "no_attention", False):
        run_attention(quick or getattr(args, "attention_quick", False))
    return rows


def run_attention(quick):
    """benchmarks/attention_gpu.py's grid (its --quick mode when quick)."""
    from benchmarks import attention_gpu

    attention_gpu.run(argparse.Namespace(quick=quick, versions="1,2,3,4,5"))


def main():
    run(add_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())


if __name__ == "__main__":
    main()
