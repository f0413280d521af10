"""Chapter 11, part 2: the fused attention kernels, checked, measured and timed (used by main.py).

5. checks: every kernel version (CPU, and CUDA when a GPU is there) against chapter 06's
   composed attention run in float64 through autograd: output and dQ, dK, dV, causal or not,
   with a key padding mask, lengths that are not multiples of any tile.
6. the online softmax: `online_softmax_attention` (the algorithm in array code) gives the same
   answer whatever the block of keys it takes at a time (README section 10).
7. memory: the peak memory of one forward + backward on the CPU, composed path vs fused
   kernel, as T grows (measured with tracemalloc, which sees NumPy's allocations): T^2 vs T.
8. a small benchmark: forward + backward of each kernel version, the composed path and
   PyTorch's scaled_dot_product_attention, in GFLOP/s by the FlashAttention counting.
"""

from __future__ import annotations

import tracemalloc

import matplotlib.pyplot as plt
import numpy as np

import tinytorch
import tinytorch.kernels
from tinytorch import backend
from tinytorch.kernels import attention as A
from tinytorch.nn.functional_attention import attention_with_weights

TOL = 1e-4


def versions(device):
    return A.CUDA_VERSIONS if device == "cuda" else A.CPU_VERSIONS


def composed_float64(q, k, v, dout, causal, kpm):
    """Chapter 06's attention (matmul, mask, softmax, matmul) in float64, gradients by
    autograd: an oracle that shares no code with the kernels."""
    ts = [tinytorch.tensor(x.astype(np.float64), requires_grad=True) for x in (q, k, v)]
    Tq, Tk = q.shape[-2], k.shape[-2]
    allowed = np.tril(np.ones((Tq, Tk), bool)) if causal else np.ones((Tq, Tk), bool)
    allowed = allowed & ~kpm[:, None, None, :]  # (B, 1, Tq, Tk), True = may attend
    with tinytorch.kernels.composed():
        out = attention_with_weights(*ts, tinytorch.tensor(allowed))[0]
    out.backward(tinytorch.tensor(dout.astype(np.float64)))
    return [out.data] + [t.grad.data for t in ts]


def check(devices, quick, rng):
    cases = [(1, 32), (77, 64)] if quick else [(1, 32), (77, 64), (300, 128), (1000, 64)]
    results = []
    for T, D in cases:
        for causal in (False, True):
            q, k, v, dout = (rng.standard_normal((2, 3, T, D)).astype(np.float32) for _ in range(4))
            kpm = rng.random((2, T)) < 0.2
            kpm[:, -1] = False  # every query keeps a visible key: the float64 oracle has no NaN
            if causal:
                kpm[:, 0] = False
            want = composed_float64(q, k, v, dout, causal, kpm)
            for device in devices:
                xp = backend.get_xp(device)
                d = [xp.asarray(x) for x in (q, k, v, dout)]
                m = xp.asarray(kpm)
                for ver in versions(device):
                    o, lse = A.forward(d[0], d[1], d[2], causal, m, version=ver)
                    grads = A.backward(d[0], d[1], d[2], o, lse, d[3], causal, m, version=ver)
                    errs = {}
                    for name, got, ref in zip(("out", "dq", "dk", "dv"), (o, *grads), want):
                        got = backend.to_device(got, "cpu").astype(np.float64)
                        errs[name] = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 0.05))
                    worst = max(errs.values())
                    ok = bool(worst < TOL)
                    print(
                        f"  {device:4s} v{ver}  T={T:5d} d={D:3d} "
                        f"{'causal' if causal else 'full  '}  max rel err {worst:.1e}  "
                        f"{'ok' if ok else 'FAILED'}",
                        flush=True,
                    )
                    results.append(
                        dict(device=device, version=ver, T=T, d=D, causal=causal, ok=ok, **errs)
                    )
    return results


def online_softmax_blocks(rng):
    """The same numbers whatever the block size: the invariant of README section 10."""
    T = 100
    q, k, v = (rng.standard_normal((1, 2, T, 32)) for _ in range(3))
    full, _ = A.online_softmax_attention(q, k, v, is_causal=True, block=T)
    rows = []
    for block in (1, 7, 32, T):
        out, _ = A.online_softmax_attention(q, k, v, is_causal=True, block=block)
        diff = float(np.abs(out - full).max())
        rows.append({"block": block, "max_abs_diff_vs_one_block": diff})
        print(f"  keys {block:3d} at a time: max |diff| vs all at once {diff:.1e}", flush=True)
    return rows


def peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def memory(quick, rng):
    """Peak bytes allocated during one forward + backward, on the CPU, by T."""
    B, H, D = 1, 4, 64
    rows = []
    for T in (128, 256, 512) if quick else (128, 256, 512, 1024, 2048):
        q, k, v, g = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
        ts = [tinytorch.tensor(x, requires_grad=True) for x in (q, k, v)]
        gt = tinytorch.tensor(g)

        def run(fused, ts=ts, gt=gt):
            for t in ts:
                t.grad = None
            if fused:
                out = A.attention(*ts, is_causal=True)
            else:
                with tinytorch.kernels.composed():
                    out = attention_with_weights(*ts, is_causal=True)[0]
            out.backward(gt)

        # inputs and gradients (q, k, v, their grads, out, dout) are the same for both
        fused, composed = peak_bytes(lambda: run(True)), peak_bytes(lambda: run(False))
        rows.append(dict(T=T, fused_MB=fused / 2**20, composed_MB=composed / 2**20))
        print(
            f"  T={T:5d}: composed {composed / 2**20:8.1f} MB   fused {fused / 2**20:6.2f} MB "
            f"(one T x T float32 array for the {B * H} heads: {B * H * T * T * 4 / 2**20:.1f} MB)",
            flush=True,
        )
    return rows


def benchmark(device, quick, time_it, conv, rng):
    """Forward + backward of each version, the composed path and torch: conv hands an array
    to PyTorch (main.torch_converter), None without PyTorch."""
    if device == "cuda":
        B, H, T, D, repeat = (8, 16, 1024, 64, 5) if quick else (16, 16, 1024, 64, 10)
    else:
        B, H, T, D, repeat = (2, 4, 256, 64, 3) if quick else (2, 8, 512, 64, 5)
    causal = True
    xp = backend.get_xp(device)
    q, k, v, g = (xp.asarray(rng.standard_normal((B, H, T, D)), np.float32) for _ in range(4))
    flops = 3.5 * 4.0 * B * H * T * T * D / 2  # forward + backward, causal
    rows = []

    def add(name, t):
        rows.append({"impl": name, "ms": t * 1e3, "GFLOPs": flops / t / 1e9})
        print(f"  {device:4s} {name:14s} {t * 1e3:9.2f} ms  {flops / t / 1e9:8.1f} GFLOP/s")

    for ver in versions(device):
        if device == "cuda" and ver == 1 and not quick:
            continue  # the naive version's T x T buffers: slow, and 100s of MB at this size

        def run(ver=ver):
            o, lse = A.forward(q, k, v, causal, version=ver)
            return A.backward(q, k, v, o, lse, g, causal, version=ver)

        add(f"kernel v{ver}", time_it(run, repeat))
    ts = [tinytorch.tensor(x, device=device, requires_grad=True) for x in (q, k, v)]
    gt = tinytorch.tensor(g, device=device)

    def composed():
        for t in ts:
            t.grad = None
        with tinytorch.kernels.composed():
            attention_with_weights(*ts, is_causal=causal)[0].backward(gt)

    add("composed ops", time_it(composed, repeat))
    if conv is not None:  # PyTorch's scaled_dot_product_attention on the same arrays
        import torch

        tq, tk, tv = (conv(x).requires_grad_() for x in (q, k, v))
        tg = conv(g)

        def ref():
            out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
            return torch.autograd.grad(out, (tq, tk, tv), tg)

        add("torch SDPA", time_it(ref, repeat))
    return {"device": device, "B": B, "H": H, "T": T, "d": D, "causal": causal, "rows": rows}


def plot(mem, benches, path):
    fig, axes = plt.subplots(1, 1 + len(benches), figsize=(5.5 * (1 + len(benches)), 4))
    ax = axes[0]
    Ts = [r["T"] for r in mem]
    ax.plot(Ts, [r["composed_MB"] for r in mem], "o-", label="composed (T x T arrays)")
    ax.plot(Ts, [r["fused_MB"] for r in mem], "o-", label="fused kernel")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("T")
    ax.set_ylabel("peak MB allocated, forward + backward")
    ax.set_title("attention memory on the CPU (B 1, H 4, d 64)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for ax, bench in zip(axes[1:], benches):
        names = [r["impl"] for r in bench["rows"]]
        ax.barh(names, [r["GFLOPs"] for r in bench["rows"]], color="tab:blue")
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # only the decades labelled
        ax.set_xlabel("forward + backward GFLOP/s (log)")
        ax.set_title(
            f"attention, {bench['device']}, B{bench['B']} H{bench['H']} T{bench['T']} "
            f"d{bench['d']} causal",
            fontsize=10,
        )
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
