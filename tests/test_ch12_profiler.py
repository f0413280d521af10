"""Chapter 12: tinytorch.profiler records ops, their backward, kernel calls and user ranges.

The exercise tests drive the pieces directly: the record around one call (`_open`/`_close`,
exercise profiler_hook) and one event as Chrome trace JSON (chrome_trace_event).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import tinytorch as tt
from tinytorch import autograd, profiler
from tinytorch.kernels import common

pytestmark = pytest.mark.ch12


def known_graph():
    """(x @ w).relu().sum() and its backward: three ops forward, three backward."""
    x = tt.randn(2, 3, requires_grad=True)
    w = tt.randn(3, 4, requires_grad=True)
    y = (x @ w).relu().sum()
    y.backward()
    return x, w


def names(prof, kind=None):
    return Counter(e.name for e in prof.events() if kind is None or e.kind == kind)


# ---- exercise profiler_hook: the record pushed around a call ----
@pytest.mark.exercise("profiler_hook")
def test_open_close_nest_and_sum_children():
    with profiler.profile(record_shapes=True, profile_memory=True) as prof:
        outer = prof._open("outer", "user")
        inner = prof._open("inner", "op", [[2, 3]])
        assert (outer.depth, inner.depth) == (0, 1)
        prof._close(inner, 24)
        prof._close(outer)
    evs = list(prof.events())
    assert [e.name for e in evs] == ["inner", "outer"]  # in the order they ended
    assert inner.shapes == [[2, 3]] and inner.bytes == 24 and outer.bytes == 0
    assert outer.start_ns <= inner.start_ns <= inner.end_ns <= outer.end_ns
    assert outer.child_ns == inner.end_ns - inner.start_ns
    assert outer.child_bytes == 24
    assert outer.self_cpu_time_total_us == pytest.approx(
        (outer.end_ns - outer.start_ns - outer.child_ns) / 1e3
    )
    assert prof._stack() == []


@pytest.mark.exercise("profiler_hook")
def test_open_drops_shapes_and_bytes_unless_asked():
    with profiler.profile() as prof:
        ev = prof._open("op", "op", [[5]])
        prof._close(ev, 100)
    assert tuple(ev.shapes) == () and ev.bytes == 0
    assert list(prof.events()) == [ev]


@pytest.mark.exercise("profiler_hook")
def test_ops_forward_and_backward_recorded_with_shapes_and_bytes():
    with profiler.profile(record_shapes=True, profile_memory=True) as prof:
        known_graph()
    assert names(prof, "op") == Counter({"MatMul": 1, "ReLU": 1, "Sum": 1})
    assert names(prof, "backward") == Counter(
        {"MatMulBackward": 1, "ReLUBackward": 1, "SumBackward": 1}
    )
    by = {e.name: e for e in prof.events()}
    assert by["MatMul"].shapes == [[2, 3], [3, 4]]
    assert by["MatMul"].bytes == 2 * 4 * 4  # the (2, 4) float32 output
    assert by["Sum"].bytes == 4
    assert by["SumBackward"].shapes == [[]]  # the gradient of a scalar
    assert by["MatMulBackward"].bytes == (2 * 3 + 3 * 4) * 4  # grad x and grad w
    assert all(e.end_ns >= e.start_ns > 0 for e in prof.events())


def test_views_allocate_no_bytes():
    x = tt.randn(4, 6, requires_grad=True)
    with profiler.profile(profile_memory=True) as prof:
        (x.reshape(6, 4).transpose(0, 1) * 2).sum().backward()
    by = {e.name: e.bytes for e in prof.events()}
    assert by["Reshape"] == 0 and by["Permute"] == 0  # views of x's memory
    assert by["Mul"] == 4 * 6 * 4
    assert by["SumBackward"] == 0  # a broadcast of the scalar gradient
    assert by["PermuteBackward"] == 0  # (ReshapeBackward copies: its gradient is transposed)


# ---- exercise chrome_trace_event ----
@pytest.mark.exercise("chrome_trace_event")
def test_chrome_trace_event_fields():
    ev = profiler.Event("MatMul", "op", [[2, 3], [3, 4]], tid=7, depth=0)
    ev.start_ns, ev.end_ns, ev.bytes = 5_000, 12_500, 32
    d = profiler.chrome_trace_event(ev, pid=11, t0_ns=1_000)
    assert d == {
        "name": "MatMul",
        "cat": "op",
        "ph": "X",
        "ts": 4.0,
        "dur": 7.5,
        "pid": 11,
        "tid": 7,
        "args": {"Input Shapes": [[2, 3], [3, 4]], "Bytes": 32},
    }
    json.dumps(d)  # plain JSON types only


@pytest.mark.exercise("chrome_trace_event")
def test_export_chrome_trace_is_valid_json_with_nesting(tmp_path):
    with profiler.profile(record_shapes=True, profile_memory=True) as prof:
        with profiler.record_function("step"):
            known_graph()
    path = prof.export_chrome_trace(tmp_path / "trace.json")
    trace = json.loads(path.read_text())
    evs = trace["traceEvents"]
    assert len(evs) == 7 and all(e["ph"] == "X" for e in evs)
    assert not list(tmp_path.glob("*.tmp"))  # written through a temp file, then renamed
    step = next(e for e in evs if e["name"] == "step")
    for e in evs:
        assert e["ts"] >= 0 and e["dur"] >= 0 and isinstance(e["tid"], int)
        assert step["ts"] <= e["ts"] and e["ts"] + e["dur"] <= step["ts"] + step["dur"] + 1e-3
    mm = next(e for e in evs if e["name"] == "MatMul")
    assert mm["args"]["Input Shapes"] == [[2, 3], [3, 4]] and mm["cat"] == "op"


# ---- the profiler as a whole ----
def test_off_by_default_records_nothing():
    assert autograd._profiler is None and common._profiler is None
    with profiler.profile() as prof:
        pass
    known_graph()  # after the profile: not recorded
    with profiler.record_function("nothing"):  # no profile active: a no-op
        known_graph()
    assert list(prof.events()) == []
    assert autograd._profiler is None and common._profiler is None


def test_record_function_nesting_and_decorator():
    @profiler.record_function("decorated")
    def f(x):
        return (x * 2).sum()

    with profiler.profile() as prof:
        with profiler.record_function("outer"):
            with profiler.record_function("inner"):
                f(tt.ones(3))
    by = {e.name: e for e in prof.events()}
    assert (by["outer"].depth, by["inner"].depth, by["decorated"].depth) == (0, 1, 2)
    assert by["Mul"].depth == by["Sum"].depth == 3
    assert by["inner"].child_ns == by["decorated"].end_ns - by["decorated"].start_ns
    assert by["outer"].cpu_time_total_us >= by["inner"].cpu_time_total_us


def test_key_averages_counts_and_table():
    with profiler.profile(record_shapes=True, profile_memory=True) as prof:
        for _ in range(3):
            known_graph()
    avg = {k.key: k for k in prof.key_averages()}
    assert avg["MatMul"].count == 3 and avg["MatMulBackward"].count == 3
    assert avg["MatMul"].self_cpu_memory_usage == 3 * 32
    assert avg["MatMul"].cpu_time == pytest.approx(avg["MatMul"].cpu_time_total / 3)
    text = prof.key_averages().table(sort_by="count", row_limit=2)
    assert "Self CPU %" in text and "# of Calls" in text and "Self CPU time total" in text
    rows = [ln for ln in text.splitlines() if ln.strip().endswith(" 3")]
    assert len(rows) == 2  # row_limit
    shaped = prof.table(sort_by="cpu_time_total", group_by_input_shape=True)
    assert "Input Shapes" in shaped and "[[2, 3], [3, 4]]" in shaped
    assert "MatMulBackward" in prof.events().table()  # a plain event list averages first
    with pytest.raises(ValueError, match="sort_by"):
        prof.table(sort_by="cuda_time")


def test_exceptions_leave_the_profiler_consistent():
    with pytest.raises(RuntimeError):
        with profiler.profile(record_shapes=True) as prof:
            with profiler.record_function("range"):
                with pytest.raises(RuntimeError, match="broadcast"):  # a forward that fails
                    tt.ones(2, 3) + tt.ones(4)
                assert [e.depth for e in prof._stack()] == [0]  # only "range" still open
                tt.ones(2) + 1  # recording goes on
                raise RuntimeError("user code fails")
    assert autograd._profiler is None and common._profiler is None  # switched off
    assert names(prof) == Counter({"Add": 2, "range": 1})  # the failed call is recorded too
    with profiler.profile() as again:  # a new profile works
        tt.ones(2) + 1
    assert names(again) == Counter({"Add": 1})


def test_profiles_do_not_nest():
    with profiler.profile() as prof:
        with pytest.raises(RuntimeError, match="already active"):
            profiler.profile().start()
        tt.ones(2) + 1
    assert names(prof) == Counter({"Add": 1})


def test_retain_graph_backward_recorded_once_per_pass():
    x = tt.randn(3, requires_grad=True)
    y = (x * x).sum()
    with profiler.profile() as prof:
        y.backward(retain_graph=True)
        y.backward()
    assert names(prof, "backward") == Counter({"MulBackward": 2, "SumBackward": 2})
    np.testing.assert_allclose(x.grad.data, 4 * x.data, rtol=1e-6)


def test_kernel_calls_nest_inside_their_op():
    if not common.runs_on("cpu"):
        pytest.skip("the kernel module does not build here")
    ln = tt.nn.LayerNorm(8)
    x = tt.randn(4, 8, requires_grad=True)
    with profiler.profile() as prof:
        ln(x).sum().backward()
    kernels = [e for e in prof.events() if e.kind == "kernel"]
    assert {"layernorm_forward_cpu", "layernorm_backward_cpu"} <= {e.name for e in kernels}
    fwd = next(e for e in prof.events() if e.name == "layernorm_forward_cpu")
    op = next(e for e in prof.events() if e.kind == "op" and e.depth == fwd.depth - 1)
    assert op.start_ns <= fwd.start_ns <= fwd.end_ns <= op.end_ns
    assert common.lib() is not None and not isinstance(common.lib(), profiler._KernelModule)
