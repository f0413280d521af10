"""Chapter 11: the fused LayerNorm and attention kernels, checked and timed on whatever is present.

    python -m tinytorch.course run 11            # checks, demos and small benchmarks
    python -m tinytorch.course run 11 --quick    # the same, smaller (well under a minute)

1. Builds the kernel module (tinytorch.kernels.build.load; the first build takes a minute).
2. Checks every kernel version (CPU, and CUDA when a GPU is there) against a float64 NumPy
   reference: y, mean, rstd, dx, dweight, dbias, relative error (max |diff| / max |ref|).
3. The variance demo: float32 one-pass mean(x^2) - mean(x)^2 vs two-pass vs Welford, as the
   rows' mean grows (variance_error.png).
4. A small benchmark: forward+backward of each kernel version, the composed tensor ops
   (tinytorch.kernels.composed()) and PyTorch when installed, with GB/s by the byte count of
   the README (benchmark.png). The full benchmarks are benchmarks/kernels_{cpu,gpu}.py.
5.-8. Part 2, attention (attention_part.py): every attention kernel version against chapter
   06's composed attention in float64; the online softmax's block-size invariance; the peak
   memory of the composed path (T x T) and of the fused kernel (T) as T grows; a small
   benchmark against the composed path and PyTorch's SDPA (attention.png). The full
   benchmarks are benchmarks/attention_{cpu,gpu}.py.
Writes into --out (default chapters/11_cuda_kernels/out/): checks.json, variance_error.png,
benchmark.png, benchmark.json, attention.json, attention.png.
"""

from __future__ import annotations

import json
import sys
import time

import attention_part  # this chapter's part 2 (next to this file)
import matplotlib.pyplot as plt
import numpy as np

import tinytorch
import tinytorch.kernels
from tinytorch import backend
from tinytorch.bench import time_cpu, time_cuda
from tinytorch.chapter import chapter_args
from tinytorch.kernels import build
from tinytorch.kernels import layernorm as L

EPS = 1e-5


def devices():
    return ["cpu", "cuda"] if backend.cuda_is_available() else ["cpu"]


def versions(device):
    return L.CUDA_VERSIONS if device == "cuda" else L.CPU_VERSIONS


def check_kernels(quick, rng):
    """Every version on every present device against the float64 reference (L.reference, the
    formulas of the README's section 1)."""
    shapes = (
        [(3, 7), (64, 768), (100, 4097)]
        if quick
        else [(1, 1), (3, 7), (1000, 768), (1000, 1023), (1000, 4097)]
    )
    results = []
    names = ("y", "mean", "rstd", "dx", "dweight", "dbias")
    for N, C in shapes:
        x = (rng.standard_normal((N, C)) * 2 + 3).astype(np.float32)
        w = (1 + 0.5 * rng.standard_normal(C)).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        dy = rng.standard_normal((N, C)).astype(np.float32)
        ref = L.reference(x, w, b, dy, EPS)
        for device in devices():
            d = [backend.to_device(a, device) for a in (x, w, b, dy)]
            for v in versions(device):
                y, mean, rstd = L.forward(d[0], d[1], d[2], EPS, version=v)
                grads = L.backward(d[3], d[0], d[1], mean, rstd, version=v)
                errs = {}
                for name, got, want in zip(names, (y, mean, rstd, *grads), ref):
                    got = backend.to_device(got, "cpu").astype(np.float64)
                    scale = max(np.abs(want).max(), 1.0 if C == 1 else 1e-30)
                    errs[name] = float(np.abs(got - want).max() / scale)
                worst = max(errs.values())
                ok = worst <= 1e-5 and all(np.isfinite(v) for v in errs.values())
                print(
                    f"  {device:4s} v{v}  N={N:5d} C={C:5d}  max rel err {worst:.1e}  "
                    f"{'ok' if ok else 'FAILED'}",
                    flush=True,
                )
                results.append(dict(device=device, version=v, N=N, C=C, ok=ok, **errs))
    return results


def variance_demo(out, quick, rng):
    """Relative error of the float32 variance as the mean moves away from zero."""
    C, rows = 1024, (8 if quick else 64)
    offsets = [0.0, 1.0, 10.0, 1e2, 1e3, 1e4, 1e5]
    errs = {
        "one pass: mean(x²) - mean(x)²": [],
        "two passes": [],
        "Welford (32 lanes + merges, as v2)": [],
    }
    for off in offsets:
        x = (rng.standard_normal((rows, C)) + off).astype(np.float32)
        true = x.astype(np.float64).var(-1)
        one = (x * x).mean(-1, dtype=np.float32) - x.mean(-1, dtype=np.float32) ** 2
        m = x.mean(-1, dtype=np.float32, keepdims=True)
        two = ((x - m) ** 2).mean(-1, dtype=np.float32)
        # Welford as v2 runs it: 32 lanes, lane l takes elements l, l + 32, ...; then the
        # lanes' (n, mean, M2) are merged pairwise with Chan's formula (the warp shuffles)
        lanes = x.reshape(rows, C // 32, 32)
        n, mean, m2 = (
            np.float32(0),
            np.zeros((rows, 32), np.float32),
            np.zeros((rows, 32), np.float32),
        )
        for k in range(C // 32):
            n += np.float32(1)
            delta = lanes[:, k] - mean
            mean += delta / n
            m2 += delta * (lanes[:, k] - mean)
        n = np.full((rows, 32), n, np.float32)
        while mean.shape[1] > 1:
            h = mean.shape[1] // 2
            na, nb, ma, mb = n[:, :h], n[:, h:], mean[:, :h], mean[:, h:]
            nn = na + nb
            delta = mb - ma
            m2 = m2[:, :h] + m2[:, h:] + delta * delta * na * nb / nn
            mean, n = ma + delta * nb / nn, nn
        for key, est in zip(errs, (one, two, m2[:, 0] / np.float32(C))):
            errs[key].append(float(np.max(np.abs(est.astype(np.float64) - true) / true)))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, vals in errs.items():
        ax.plot([max(o, 0.1) for o in offsets], [max(v, 1e-9) for v in vals], "o-", label=key)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean of the row (its standard deviation is 1); 0 drawn at 0.1")
    ax.set_ylabel("relative error of the variance (float32)")
    ax.set_title(f"LayerNorm statistics in float32, C = {C}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "variance_error.png", dpi=110)
    plt.close(fig)
    for off, *vals in zip(offsets, *errs.values()):
        print(
            f"  mean {off:8.0e}: "
            + "  ".join(f"{k.split(':')[0]} {v:.1e}" for k, v in zip(errs, vals))
        )
    return {"offsets": offsets, **errs}


def timer(device):
    """time_it(fn, repeat): the median seconds of fn() after one warm-up, by tinytorch.bench's
    timers (CUDA events on CuPy's stream on the GPU, wall clock on the CPU)."""
    timing = time_cuda if device == "cuda" else time_cpu
    return lambda fn, repeat: timing(fn, warmup=1, repeat=repeat)


def torch_converter(device):
    """The function that hands this device's arrays to PyTorch (sharing their memory), or None
    where there is no PyTorch to compare with (not installed, or no GPU build for "cuda")."""
    try:
        import torch
    except ImportError:
        return None
    if device == "cuda":
        return torch.from_dlpack if torch.cuda.is_available() else None
    return torch.from_numpy


def benchmark(device, quick, rng):
    """Forward+backward of each version, the composed ops and torch (if importable)."""
    if device == "cuda":
        N, C, repeat = (4096, 1024, 10) if quick else (16384, 4096, 30)
    else:
        N, C, repeat = (512, 768, 5) if quick else (2048, 1024, 10)
    xp = backend.get_xp(device)
    x, dy = (xp.asarray(rng.standard_normal((N, C)), dtype=np.float32) for _ in range(2))
    w, b = (xp.asarray(rng.standard_normal(C), dtype=np.float32) for _ in range(2))
    time_it = timer(device)
    nbytes = (5 * N * C + 5 * C + 4 * N) * 4  # README section 3
    rows = []

    def add(name, t):
        rows.append({"impl": name, "ms": t * 1e3, "GBps": nbytes / t / 1e9})
        print(
            f"  {device:4s} {name:18s} {t * 1e3:9.3f} ms  {nbytes / t / 1e9:7.1f} GB/s", flush=True
        )

    for v in versions(device):

        def run(v=v):
            y, mean, rstd = L.forward(x, w, b, EPS, version=v)
            return L.backward(dy, x, w, mean, rstd, version=v)

        add(f"kernel v{v}", time_it(run, max(2, repeat // 5) if v == 1 else repeat))

    F = tinytorch.nn.functional
    xt = tinytorch.tensor(x, device=device, requires_grad=True)
    wt = tinytorch.tensor(w, device=device, requires_grad=True)
    bt = tinytorch.tensor(b, device=device, requires_grad=True)
    dyt = tinytorch.tensor(dy, device=device)

    def lib():
        xt.grad = wt.grad = bt.grad = None
        F.layer_norm(xt, (C,), wt, bt, EPS).backward(dyt)

    with tinytorch.kernels.composed():
        add("composed ops", time_it(lib, max(2, repeat // 2)))
    conv = torch_converter(device)
    if conv is not None:
        import torch

        xr, wr, br = (conv(a).requires_grad_() for a in (x, w, b))
        dyr = conv(dy)

        def ref():
            y = torch.nn.functional.layer_norm(xr, (C,), wr, br, EPS)
            return torch.autograd.grad(y, (xr, wr, br), dyr)

        add("torch", time_it(ref, repeat))
    return {"device": device, "N": N, "C": C, "bytes": nbytes, "rows": rows}


def plot_benchmark(benches, path):
    fig, axes = plt.subplots(1, len(benches), figsize=(6 * len(benches), 4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        names = [r["impl"] for r in bench["rows"]]
        ax.barh(names, [r["GBps"] for r in bench["rows"]], color="tab:blue")
        ax.invert_yaxis()
        ax.set_xlabel("forward+backward GB/s (bytes a fused kernel must move)")
        ax.set_title(f"LayerNorm, {bench['device']}, N={bench['N']} C={bench['C']}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = chapter_args(__file__, __doc__.splitlines()[0], record=False)
    args = parser.parse_args()
    out = args.out
    rng = np.random.default_rng(args.seed)

    print("1. building the kernel module (cached after the first time)", flush=True)
    t0 = time.perf_counter()
    lib = build.load(verbose=True)
    print(
        f"   {lib.__file__}\n   families {list(lib.families)}, CUDA compiled in: "
        f"{lib.with_cuda}, GPU present: {backend.cuda_is_available()} "
        f"({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )

    print("2. every kernel version vs the float64 reference", flush=True)
    checks = check_kernels(args.quick, rng)
    (out / "checks.json").write_text(json.dumps(checks, indent=2))

    print("3. float32 variance: one pass vs two passes vs Welford", flush=True)
    variance = variance_demo(out, args.quick, rng)

    print("4. a small benchmark (forward + backward)", flush=True)
    benches = [benchmark(d, args.quick, rng) for d in devices()]
    plot_benchmark(benches, out / "benchmark.png")
    (out / "benchmark.json").write_text(
        json.dumps({"benchmarks": benches, "variance": variance}, indent=2)
    )

    print("5. every attention kernel version vs chapter 06's attention in float64", flush=True)
    att_checks = attention_part.check(devices(), args.quick, rng)
    print("6. the online softmax: the same answer whatever the block of keys", flush=True)
    blocks = attention_part.online_softmax_blocks(rng)
    print("7. peak memory of one forward + backward on the CPU: composed vs fused", flush=True)
    mem = attention_part.memory(args.quick, rng)
    print("8. a small attention benchmark (forward + backward)", flush=True)
    att_benches = [
        attention_part.benchmark(d, args.quick, timer(d), torch_converter(d), rng)
        for d in devices()
    ]
    attention_part.plot(mem, att_benches, out / "attention.png")
    (out / "attention.json").write_text(
        json.dumps(
            {"checks": att_checks, "blocks": blocks, "memory": mem, "benchmarks": att_benches},
            indent=2,
        )
    )
    failed = [c for c in checks + att_checks if not c["ok"]]
    failed += [b for b in blocks if b["max_abs_diff_vs_one_block"] > 1e-12]
    print(
        f"wrote {out}/checks.json, variance_error.png, benchmark.png, benchmark.json, "
        "attention.json, attention.png"
    )
    if failed:
        print(f"{len(failed)} kernel checks FAILED")
        sys.exit(1)


if __name__ == "__main__":
    main()
