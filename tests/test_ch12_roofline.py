"""Chapter 12: the timer (warm-up, median, spread) and the roofline counts.

bytes_moved is checked against the nbytes of the arrays an op really reads and writes;
flop_count against the multiply-adds written out; roofline_time on a memory-bound and a
compute-bound case. The timer is checked with a fake clock, so no test depends on speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinytorch import bench, roofline

pytestmark = pytest.mark.ch12


class FakeClock:
    """Stands in for the `time` module inside tinytorch.bench: each fn() call advances the
    clock by the next of `durations`."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def perf_counter(self):
        return self.now

    def fn(self):
        self.now += self.durations[self.calls]
        self.calls += 1


# ---- time_median --------------------------------------------------------------------------------
@pytest.mark.exercise("time_median")
def test_time_cpu_warms_up_then_takes_the_median(monkeypatch):
    clock = FakeClock([100.0, 100.0, 5.0, 1.0, 3.0])  # two slow warm-up calls, then 5, 1, 3
    monkeypatch.setattr(bench, "time", clock)
    samples = []
    assert bench.time_cpu(clock.fn, warmup=2, repeat=3, samples=samples) == 3.0
    assert clock.calls == 5
    assert samples == [5.0, 1.0, 3.0]  # the timed calls only, in order


@pytest.mark.exercise("time_median")
def test_time_cpu_runs_until_min_time(monkeypatch):
    clock = FakeClock([1.0] * 10)
    monkeypatch.setattr(bench, "time", clock)
    samples = []
    assert bench.time_cpu(clock.fn, warmup=0, repeat=2, min_time=4.5, samples=samples) == 1.0
    assert len(samples) == 5  # 2 would do for repeat; 5 seconds pass 4.5


@pytest.mark.exercise("time_median")
def test_time_cpu_even_count_median(monkeypatch):
    clock = FakeClock([0.0, 2.0, 4.0, 6.0, 100.0])
    monkeypatch.setattr(bench, "time", clock)
    assert bench.time_cpu(clock.fn, warmup=1, repeat=4) == 5.0  # mean of the middle two


# ---- flop_count ---------------------------------------------------------------------------------
@pytest.mark.exercise("flop_count")
def test_flop_count_matmul_and_layer_norm():
    assert roofline.flop_count("matmul", M=3, K=5, N=7) == 2 * 3 * 5 * 7  # a mul and an add each
    assert roofline.flop_count("layer_norm", N=10, C=768) == 8 * 10 * 768


@pytest.mark.exercise("flop_count")
def test_flop_count_attention_two_matmuls_halved_when_causal():
    B, H, T, D = 2, 3, 16, 8
    scores = roofline.flop_count("matmul", M=T, K=D, N=T) * B * H  # Q K^T
    mix = roofline.flop_count("matmul", M=T, K=T, N=D) * B * H  # P V
    assert roofline.flop_count("attention", B=B, H=H, T=T, D=D) == scores + mix
    assert roofline.flop_count("attention", B=B, H=H, T=T, D=D, causal=True) == (scores + mix) // 2


# ---- bytes_moved --------------------------------------------------------------------------------
@pytest.mark.exercise("bytes_moved")
def test_bytes_moved_matmul_is_inputs_plus_output():
    M, K, N = 4, 6, 5
    for dtype in (np.float32, np.float64):
        a, b = np.ones((M, K), dtype), np.ones((K, N), dtype)
        out = a @ b
        got = roofline.bytes_moved("matmul", dtype, M=M, K=K, N=N)
        assert got == a.nbytes + b.nbytes + out.nbytes


@pytest.mark.exercise("bytes_moved")
def test_bytes_moved_layer_norm_and_attention_match_the_arrays():
    N, C = 7, 12
    x, w, b, y = (np.ones(s, np.float32) for s in ((N, C), (C,), (C,), (N, C)))
    mean, rstd = np.ones(N, np.float32), np.ones(N, np.float32)
    got = roofline.bytes_moved("layer_norm", N=N, C=C)
    assert got == sum(a.nbytes for a in (x, w, b, y, mean, rstd))
    B, H, T, D = 2, 3, 5, 4
    q, k, v, out = (np.ones((B, H, T, D), np.float32) for _ in range(4))
    lse = np.ones((B, H, T), np.float32)
    got = roofline.bytes_moved("attention", B=B, H=H, T=T, D=D, causal=True)
    assert got == sum(a.nbytes for a in (q, k, v, out, lse))


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="unknown op"):
        roofline.flop_count("conv", N=1)
    with pytest.raises(ValueError, match="takes sizes"):
        roofline.bytes_moved("matmul", M=1, K=2)


# ---- roofline_time ------------------------------------------------------------------------------
@pytest.mark.exercise("roofline_time")
def test_roofline_time_takes_the_slower_roof():
    bw, peak = 10e9, 100e9  # ridge point: 10 FLOPs per byte
    assert roofline.roofline_time(1e9, 1e9, bw, peak) == pytest.approx(0.1)  # memory-bound
    assert roofline.roofline_time(1e6, 1e11, bw, peak) == pytest.approx(1.0)  # compute-bound
    assert roofline.roofline_time(1e9, 1e10, bw, peak) == pytest.approx(0.1)  # on the ridge


@pytest.mark.exercise("roofline_time")
def test_layer_norm_is_memory_bound_big_matmul_compute_bound():
    bw, peak = 20e9, 200e9
    ln = dict(N=4096, C=1024)
    t = roofline.roofline_time(
        roofline.bytes_moved("layer_norm", **ln), roofline.flop_count("layer_norm", **ln), bw, peak
    )
    assert t == pytest.approx(roofline.bytes_moved("layer_norm", **ln) / bw)
    mm = dict(M=1024, K=1024, N=1024)
    t = roofline.roofline_time(
        roofline.bytes_moved("matmul", **mm), roofline.flop_count("matmul", **mm), bw, peak
    )
    assert t == pytest.approx(roofline.flop_count("matmul", **mm) / peak)


def test_roofline_time_refuses_zero_roofs():
    with pytest.raises(ValueError, match="must be > 0"):
        roofline.roofline_time(1, 1, 0, 1)


def test_arithmetic_intensity():
    assert roofline.arithmetic_intensity("layer_norm", N=1024, C=1024) < 1.1
    assert roofline.arithmetic_intensity("matmul", M=1024, K=1024, N=1024) > 100
