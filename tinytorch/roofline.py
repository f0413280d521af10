"""The roofline model (chapter 12): how fast an op could possibly run on this machine.

A kernel has to move its bytes through memory and do its floating-point operations; whichever
takes longer bounds its time from below:

    attainable time = max(bytes_moved / bandwidth, flop_count / peak FLOP/s)

An op whose arithmetic intensity (FLOPs per byte) lies below the machine's ridge point
(peak / bandwidth) is memory-bound: LayerNorm (a few FLOPs per float) always is; a large
matmul (about n/3 FLOPs per float for n x n) is compute-bound; attention moves between the two
with T. The counts below are the minimum any implementation must do, in the counting the
benchmarks use (benchmarks/kernels_common.py, benchmarks/attention_gpu.py):

    op           sizes                 FLOPs (forward)              bytes (forward, minimum)
    matmul       M, K, N               2*M*K*N                      (M*K + K*N + M*N) * itemsize
    layer_norm   N, C                  8*N*C                        (2*N*C + 2*C + 2*N) * itemsize
    attention    B, H, T, D, causal    4*B*H*T*T*D (/2 if causal)   (4*B*H*T*D + B*H*T) * itemsize

LayerNorm's 8 per element: mean (1 add), variance (subtract, square, add), normalize (subtract,
multiply), affine (multiply, add). Its bytes: read x, weight and bias, write y, and the mean and
rstd its backward keeps. Attention (fused, as FlashAttention): read q, k, v, write the output and
the log-sum-exp per row; the T x T scores never touch memory (the composed path writes and reads
them: B*H*T*T more floats several times, which is why fusing it pays).

`measure_bandwidth` and `measure_peak_flops` give this machine's two roofs (a large copy, a
large float32 matmul through NumPy's BLAS): chapter 12's main.py prints them with the
attainable and measured times of the three ops.
"""

from __future__ import annotations

import numpy as np

from .bench import time_cpu

__all__ = [
    "OPS",
    "flop_count",
    "bytes_moved",
    "roofline_time",
    "arithmetic_intensity",
    "measure_bandwidth",
    "measure_peak_flops",
]

OPS = {
    "matmul": ("M", "K", "N"),
    "layer_norm": ("N", "C"),
    "attention": ("B", "H", "T", "D"),
}


def _sizes(op: str, sizes: dict) -> dict:
    """Check that `sizes` names exactly the op's sizes (attention may add causal=)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {sorted(OPS)}")
    want = set(OPS[op]) | ({"causal"} if op == "attention" else set())
    missing = set(OPS[op]) - set(sizes)
    if missing or set(sizes) - want:
        raise ValueError(f"{op} takes sizes {OPS[op]}; got {sorted(sizes)}")
    return sizes


def flop_count(op: str, **sizes) -> int:
    """Floating-point operations of one forward call of `op` (table in the module docstring):
    flop_count("matmul", M=64, K=128, N=256), flop_count("layer_norm", N=768, C=128),
    flop_count("attention", B=12, H=4, T=64, D=32, causal=True)."""
    s = _sizes(op, sizes)
    # BEGIN EXERCISE ch12: flop_count - 2*M*K*N; 8*N*C; 4*B*H*T*T*D (halved, // 2, when causal)
    if op == "matmul":
        return 2 * s["M"] * s["K"] * s["N"]
    if op == "layer_norm":
        return 8 * s["N"] * s["C"]
    flops = 4 * s["B"] * s["H"] * s["T"] * s["T"] * s["D"]
    return flops // 2 if s.get("causal", False) else flops
    # END EXERCISE


def bytes_moved(op: str, dtype=np.float32, **sizes) -> int:
    """The least bytes one forward call of `op` must read and write, each input read once and
    each output written once (table in the module docstring), for elements of `dtype`."""
    s = _sizes(op, sizes)
    itemsize = np.dtype(dtype).itemsize
    # BEGIN EXERCISE ch12: bytes_moved - element counts from the table, times itemsize
    if op == "matmul":
        elements = s["M"] * s["K"] + s["K"] * s["N"] + s["M"] * s["N"]
    elif op == "layer_norm":
        elements = 2 * s["N"] * s["C"] + 2 * s["C"] + 2 * s["N"]
    else:
        rows = s["B"] * s["H"] * s["T"]
        elements = 4 * rows * s["D"] + rows
    return elements * itemsize
    # END EXERCISE


def roofline_time(nbytes: float, flops: float, bandwidth: float, peak: float) -> float:
    """The least time (seconds) for `nbytes` of memory traffic and `flops` operations on a
    machine with `bandwidth` bytes/s and `peak` FLOP/s: whichever roof is lower wins."""
    if bandwidth <= 0 or peak <= 0:
        raise ValueError(f"bandwidth and peak must be > 0, got {bandwidth} and {peak}")
    # BEGIN EXERCISE ch12: roofline_time - max(bytes / bandwidth, flops / peak)
    return max(nbytes / bandwidth, flops / peak)
    # END EXERCISE


def arithmetic_intensity(op: str, dtype=np.float32, **sizes) -> float:
    """FLOPs per byte moved: above the ridge point (peak / bandwidth), compute-bound."""
    return flop_count(op, **sizes) / bytes_moved(op, dtype, **sizes)


def measure_bandwidth(nbytes: int = 256 << 20, repeat: int = 10) -> float:
    """Memory bandwidth in bytes/s: copying an array of `nbytes` (far larger than the caches)
    reads and writes each byte once. NumPy copies on one thread: that is the roof NumPy's
    elementwise ops see (OpenMP kernels over several cores can see more)."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    seconds = time_cpu(lambda: np.copyto(dst, src), warmup=2, repeat=repeat)
    return 2 * src.nbytes / seconds


def measure_peak_flops(n: int = 1024, repeat: int = 10) -> float:
    """Float32 FLOP/s of an n x n matmul through NumPy's BLAS (all its threads): the practical
    compute roof on this CPU, lower than the datasheet's peak."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    seconds = time_cpu(lambda: np.matmul(a, b, out=out), warmup=2, repeat=repeat)
    return 2 * n**3 / seconds
