"""Where the time goes: a profiler with torch.profiler's names (chapter 12).

    with tinytorch.profiler.profile(record_shapes=True, profile_memory=True) as prof:
        with tinytorch.profiler.record_function("step"):
            loss = model(x, y)[1]
            loss.backward()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    prof.export_chrome_trace("trace.json")       # open in https://ui.perfetto.dev

While a `profile` is active it records one `Event` per
- op forward: every `Function.apply` (name = the Function's class, e.g. "MatMul"; input shapes =
  the shapes of the raw arrays, [] for a Python scalar; bytes = the output's nbytes, 0 for a
  view of an input such as a reshape or a transpose),
- op backward: every Function's backward in `backward()` ("MatMulBackward"; input shape = the
  output gradient's; bytes = the nbytes of the gradients it returns),
- kernel call: every function of the compiled kernel module called through
  `tinytorch.kernels.common.lib()` ("layernorm_forward_cpu"; no shapes: kernels take pointers),
- user range: `record_function(name)` (a `with` block or a decorator).
Events nest (a kernel inside the op that calls it, ops inside a user range); an event's self
time is its wall time minus its children's. Times are wall clock (a GPU kernel's event is its
launch, not its run: synchronize inside a record_function range to see GPU time).

Off by default and free when off: the hooks are one `if _profiler is not None` in
`Function.apply`, one in the backward loop (tinytorch/autograd.py) and one in
`tinytorch.kernels.common.lib()`; nothing else changes when no profile is active.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from pathlib import Path

from . import autograd
from .kernels import common as _kernels
from .profiler_table import SORT_KEYS, EventList, KeyAverage  # noqa: F401 - torch's names

__all__ = ["profile", "record_function", "Event", "KeyAverage", "EventList", "chrome_trace_event"]

_clock = time.perf_counter_ns  # a clock for the event stamps (timing loops: tinytorch.bench)


class Event:
    """One recorded call. Times in nanoseconds of `time.perf_counter_ns`; kind is "op",
    "backward", "kernel" or "user"."""

    __slots__ = ("name", "kind", "shapes", "tid", "depth", "start_ns", "end_ns", "child_ns")
    __slots__ += ("bytes", "child_bytes")

    def __init__(self, name, kind, shapes=(), tid=0, depth=0):
        self.name, self.kind, self.shapes, self.tid, self.depth = name, kind, shapes, tid, depth
        self.start_ns = self.end_ns = 0
        self.child_ns = 0  # wall time of the events directly inside this one
        self.bytes = 0  # allocated by this call itself (output / gradients)
        self.child_bytes = 0  # allocated by the events inside it

    @property
    def cpu_time_total_us(self) -> float:
        return (self.end_ns - self.start_ns) / 1e3

    @property
    def self_cpu_time_total_us(self) -> float:
        return (self.end_ns - self.start_ns - self.child_ns) / 1e3

    def __repr__(self):
        return (
            f"Event({self.name!r}, {self.kind}, shapes={list(self.shapes)}, "
            f"{self.cpu_time_total_us:.1f} us, {self.bytes} bytes, depth {self.depth})"
        )


def _shape_of(a):
    shape = getattr(a, "shape", None)
    return list(shape) if shape is not None else []


def _root(a):
    """The array that owns `a`'s memory (a itself unless a is a view)."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def _nbytes(arrays, inputs) -> int:
    """Bytes of the arrays a call returned, except views of its inputs' memory (a reshape, a
    transpose, a broadcast of the gradient allocate nothing)."""
    if not isinstance(arrays, tuple):
        arrays = (arrays,)
    owners = {id(_root(x)) for x in inputs if hasattr(x, "nbytes")}
    return sum(a.nbytes for a in arrays if hasattr(a, "nbytes") and id(_root(a)) not in owners)


class profile:  # noqa: N801 - torch.profiler.profile's name
    """Record ops, their backward, kernel calls and user ranges while active (`with` block, or
    start()/stop()). record_shapes: keep input shapes; profile_memory: keep bytes allocated.
    One profile at a time (RuntimeError for a second)."""

    def __init__(self, record_shapes: bool = False, profile_memory: bool = False):
        self.record_shapes = record_shapes
        self.profile_memory = profile_memory
        self._events: list[Event] = []
        self._local = threading.local()
        self._kernel_proxies: dict[int, _KernelModule] = {}
        self.start_ns = self.end_ns = 0

    # ---- switching on and off ----------------------------------------------------------------
    def start(self) -> profile:
        if autograd._profiler is not None:
            raise RuntimeError(
                "tinytorch.profiler.profile: another profile is already active; stop it first "
                "(profiles do not nest: use record_function for ranges inside one)"
            )
        self._events, self.start_ns, self.end_ns = [], _clock(), 0
        autograd._profiler = _kernels._profiler = self
        return self

    def stop(self) -> None:
        if autograd._profiler is self:
            autograd._profiler = _kernels._profiler = None
        self.end_ns = _clock()
        self._local = threading.local()  # ranges left open by an exception are dropped

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False  # an exception inside passes through; what was recorded stays

    # ---- the record around one call ------------------------------------------------------------
    def _stack(self) -> list[Event]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _open(self, name, kind, shapes=()) -> Event:
        """Start an Event inside the innermost open one of this thread; returns it.

        Event(name, kind, shapes, tid, depth): shapes as given when record_shapes, else ();
        tid = threading.get_ident(); depth = how many events are open (the stack's length).
        Push it on this thread's stack (self._stack()), then stamp start_ns = _clock() last,
        so the bookkeeping is not counted as the call's time."""
        # BEGIN EXERCISE ch12: profiler_hook - make the Event, push it, stamp start_ns last
        stack = self._stack()
        shapes = shapes if self.record_shapes else ()
        ev = Event(name, kind, shapes, threading.get_ident(), len(stack))
        stack.append(ev)
        ev.start_ns = _clock()  # last: the bookkeeping above is not the call's time
        return ev
        # END EXERCISE

    def _close(self, ev: Event, nbytes: int = 0) -> None:
        """End `ev` (the innermost open Event): stamp end_ns, keep nbytes (profile_memory), pop
        it, add its time (end - start) to the parent's child_ns and its bytes + child_bytes to
        the parent's child_bytes (the parent: the event below it on the stack, if any), and
        append it to self._events."""
        # BEGIN EXERCISE ch12: profiler_hook - stamp end_ns, keep bytes, pop, update parent, record
        ev.end_ns = _clock()
        if self.profile_memory:
            ev.bytes = nbytes
        stack = self._stack()
        if stack and stack[-1] is ev:
            stack.pop()
        if stack:
            parent = stack[-1]
            parent.child_ns += ev.end_ns - ev.start_ns
            parent.child_bytes += ev.bytes + ev.child_bytes
        self._events.append(ev)
        # END EXERCISE

    # ---- the hooks (called from autograd.py and kernels/common.py only while active) ------------
    def forward(self, fn, raw, kwargs):
        """Function.apply's `fn.forward(*raw, **kwargs)`, recorded."""
        ev = self._open(fn.name, "op", [_shape_of(a) for a in raw] if self.record_shapes else ())
        out = None
        try:
            out = fn.forward(*raw, **kwargs)
        finally:
            self._close(ev, _nbytes(out, raw))
        return out

    def wrap_backward(self, ctx) -> None:
        """Make the backward loop's `ctx.backward(g)` recorded (an attribute on this Function
        object only; a second wrap, after backward(retain_graph=True), is a no-op)."""
        if "backward" in vars(ctx):
            return
        ctx.backward = functools.partial(_recorded_backward, ctx, ctx.backward)

    def _backward(self, ctx, backward, grad):
        ev = self._open(ctx.name + "Backward", "backward", [_shape_of(grad)])
        out = None
        try:
            out = backward(grad)
        finally:
            self._close(ev, _nbytes(out, (grad,)))
        return out

    def kernels(self, module):
        """What `kernels.common.lib()` returns while active: the module, its calls recorded."""
        proxy = self._kernel_proxies.get(id(module))
        if proxy is None:
            proxy = self._kernel_proxies[id(module)] = _KernelModule(module, self)
        return proxy

    # ---- results -------------------------------------------------------------------------------
    def events(self) -> EventList:
        """Every recorded Event, in the order they ended."""
        return EventList(self._events)

    def key_averages(self, group_by_input_shape: bool = False) -> EventList:
        return self.events().key_averages(group_by_input_shape)

    def table(self, sort_by: str = "self_cpu_time_total", row_limit: int = 100, **kw) -> str:
        """key_averages().table(...) (group_by_input_shape=True adds the Input Shapes column)."""
        group = kw.pop("group_by_input_shape", False)
        return self.key_averages(group).table(sort_by=sort_by, row_limit=row_limit, **kw)

    def export_chrome_trace(self, path) -> Path:
        """Write the events as Chrome trace JSON (Perfetto, chrome://tracing), atomically."""
        pid = os.getpid()
        t0 = self.start_ns or min((e.start_ns for e in self._events), default=0)
        trace = {
            "traceEvents": [chrome_trace_event(e, pid, t0) for e in self._events],
            "displayTimeUnit": "ms",
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(trace))
        os.replace(tmp, path)  # a reader never sees half a file
        return path


def _recorded_backward(ctx, backward, grad):
    prof = autograd._profiler  # the active one now (None: a graph kept past its profile)
    if prof is None:
        return backward(grad)
    return prof._backward(ctx, backward, grad)


class _KernelModule:
    """The compiled kernel module with each function call recorded as a "kernel" Event."""

    def __init__(self, module, prof):
        self._module, self._prof = module, prof

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if not callable(attr):
            return attr
        prof = self._prof

        def call(*args, **kwargs):
            ev = prof._open(name, "kernel")
            try:
                return attr(*args, **kwargs)
            finally:
                prof._close(ev)

        return call


def chrome_trace_event(ev: Event, pid: int, t0_ns: int) -> dict:
    """One Event as a Chrome trace "complete" event: {"name", "cat": its kind, "ph": "X", "ts":
    start in microseconds from t0_ns, "dur": microseconds, "pid", "tid", "args": {"Input
    Shapes": lists of ints, "Bytes": ev.bytes}}."""
    # BEGIN EXERCISE ch12: chrome_trace_event - one Event as a "ph": "X" dict, times in us
    return {
        "name": ev.name,
        "cat": ev.kind,
        "ph": "X",
        "ts": (ev.start_ns - t0_ns) / 1e3,
        "dur": (ev.end_ns - ev.start_ns) / 1e3,
        "pid": pid,
        "tid": ev.tid,
        "args": {"Input Shapes": [list(s) for s in ev.shapes], "Bytes": ev.bytes},
    }
    # END EXERCISE


class record_function:  # noqa: N801 - torch.profiler.record_function's name
    """A named user range: `with record_function("optimizer.step"): ...` or a decorator.
    Recorded as a "user" Event around what runs inside; nothing when no profile is active."""

    def __init__(self, name: str):
        self.name = name
        self._ev = self._prof = None

    def __enter__(self):
        self._prof = autograd._profiler
        if self._prof is not None:
            self._ev = self._prof._open(self.name, "user")
        return self

    def __exit__(self, *exc):
        if self._ev is not None and autograd._profiler is self._prof:  # (not after stop())
            self._prof._close(self._ev)
        self._ev = self._prof = None
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with record_function(self.name):
                return fn(*args, **kwargs)

        return wrapper
