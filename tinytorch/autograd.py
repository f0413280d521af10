"""Reverse-mode automatic differentiation in one screen: Function, apply, topological order,
backward, no_grad.

A `Function` is one op: `forward` computes on raw arrays (numpy or cupy) and saves what its
gradient needs on `self`; `backward` takes the output's gradient and returns one gradient per
positional input (None for inputs that are constants or need none). `Function.apply` runs the
forward and, when any input requires grad, links the output to the Function so `backward()`
can walk the graph back.

`backward()` orders the graph with an iterative depth-first search (no recursion limit: a chain
of 10,000 ops is fine), then runs each Function's backward once, in reverse topological order,
summing the gradients that reach a tensor along several paths. Gradients accumulate into the
`.grad` of leaves. Unless `retain_graph=True`, each Function drops what it saved as soon as it
has run, so a second backward through the same graph is an error, as in PyTorch.

Not here: gradcheck (tinytorch.gradcheck), the copy a leaf's gradient may skip
(tinytorch.copies.steal_or_copy), the ops themselves (tinytorch.ops), the profiler
(tinytorch.profiler; `_profiler` below is its one hook, None unless a profile is active).
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from .copies import steal_or_copy

_Tensor = None  # set by tinytorch.tensor (avoids an import cycle)
_grad_enabled = True
_profiler = None  # the active tinytorch.profiler.profile, else None (then: no cost but one test)


# ---- grad mode ----------------------------------------------------------------------------
def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode:
    """Base of no_grad / enable_grad: a context manager and a decorator."""

    mode = True

    def __enter__(self):
        global _grad_enabled
        self._prev, _grad_enabled = _grad_enabled, self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Turn graph recording off: `with no_grad(): ...` or `@no_grad()`."""

    mode = False


class enable_grad(_GradMode):
    mode = True


# ---- broadcasting's backward --------------------------------------------------------------
def unbroadcast(grad, shape):
    """The backward of broadcasting: sum `grad` down to `shape`.

    Broadcasting prepends dimensions and stretches size-1 ones; its gradient sums over exactly
    those dimensions. Every binary op's backward goes through here.
    """
    # BEGIN EXERCISE ch01: unbroadcast - sum grad over the dims broadcasting added or stretched
    if grad.shape == shape:
        return grad  # (the common case: nothing was broadcast, no copy)
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)
    # END EXERCISE


# ---- Function: one op, and the graph edge it records ----------------------------------------
class Function:
    """One differentiable op. Subclasses define `forward(*arrays, **kw)` and `backward(grad)`."""

    inputs = None  # the positional arguments (Tensors and constants), while the graph lives
    # one bool per positional argument: does it need a gradient? Set by `apply` before
    # `forward`, so a backward can skip the products nobody asked for (a @ b with a constant b
    # needs only grad_a).
    needs_input_grad = ()

    @classmethod
    def apply(cls, *args, **kwargs):
        # This runs once per op call, so it is kept lean: at small sizes its Python overhead,
        # not the arithmetic, decides the speed (see benchmarks/ops_cpu.py).
        Tensor = _Tensor
        raw, flags, cpu = [], [], None
        for a in args:
            if isinstance(a, Tensor):
                data = a.data
                on_cpu = isinstance(data, np.ndarray)
                if cpu is None:
                    cpu = on_cpu
                elif on_cpu is not cpu:
                    _mixed_devices(cls.__name__, args)
                raw.append(data)
                flags.append(a.requires_grad)
            else:
                if isinstance(a, np.generic):  # NumPy scalars are "weak" like Python ones, as
                    a = a.item()  # in PyTorch: np.sqrt(2) * float32 stays float32
                raw.append(a)
                flags.append(False)
        fn = cls()
        needs = _grad_enabled and True in flags
        fn.needs_input_grad = tuple(flags) if needs else (False,) * len(flags)
        try:
            if _profiler is None:
                out = fn.forward(*raw, **kwargs)
            else:  # tinytorch.profiler records the call
                out = _profiler.forward(fn, raw, kwargs)
        except ValueError as e:  # (free when nothing is raised) name the op, shapes, dtypes
            _not_broadcastable(cls.__name__, args, e)
        if isinstance(out, np.generic):  # NumPy reductions return scalars; keep arrays
            out = np.asarray(out)
        t = Tensor.__new__(Tensor)
        t.data, t.grad, t._ctx = out, None, None
        # BEGIN EXERCISE ch01: record_graph - t.requires_grad; if needed, fn.inputs and t._ctx
        t.requires_grad = needs
        if needs:
            fn.inputs = args
            t._ctx = fn
        # END EXERCISE
        return t

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name}Backward>"


# ---- backward: topological order, then the chain rule from the root down --------------------
def _parents(node):
    """The inputs of `node`'s Function that need a gradient (none for a leaf)."""
    ctx = node._ctx
    if ctx is None:
        return ()
    if ctx.inputs is None:
        raise RuntimeError(
            f"Trying to backward through the graph a second time (op {ctx.name}, output "
            f"shape {tuple(node.shape)}): its saved values were freed after the first "
            "backward. Call backward(retain_graph=True) the first time if you need to."
        )
    return [t for t in ctx.inputs if isinstance(t, _Tensor) and t.requires_grad]


def _topological_order(root):
    """Tensors reachable from `root` through `_parents`, each after all of its parents."""
    order, seen = [], set()
    stack = [(root, False)]  # (tensor, are its parents already in `order`?)
    # BEGIN EXERCISE ch01: topological_order - iterative depth-first search with a stack
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in _parents(node):
            if id(parent) not in seen:
                stack.append((parent, False))
    # END EXERCISE
    return order


def backward(root, gradient=None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into every leaf's `.grad` (see Tensor.backward)."""
    Tensor = _Tensor
    grads = {id(root): _root_grad(root, gradient)}  # id(tensor) -> d(root)/d(tensor) so far
    for node in reversed(_topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue  # every path from root to it carries no gradient
        if isinstance(g, np.generic):  # NumPy sums 0-d arrays into scalars: keep arrays
            g = np.asarray(g)
        ctx = node._ctx
        if ctx is None:  # a leaf: the gradient lands in .grad
            # BEGIN EXERCISE ch01: accumulate_grad - node.grad = g the first time, else grad + g
            if node.grad is None:
                node.grad = Tensor._wrap(steal_or_copy(g))  # never an array another leaf holds
            else:
                node.grad = Tensor._wrap(node.grad.data + g)
            # END EXERCISE
            continue
        if _profiler is not None:  # tinytorch.profiler: record the ctx.backward(g) below
            _profiler.wrap_backward(ctx)
        # BEGIN EXERCISE ch01: chain_rule - ctx.backward(g), then add each input's gradient to grads
        in_grads = ctx.backward(g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for inp, ig in zip(ctx.inputs, in_grads):
            if ig is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                continue
            ig = _checked_grad(ctx, inp, ig)
            prev = grads.get(id(inp))
            grads[id(inp)] = ig if prev is None else _sum_grads(prev, ig)
        # END EXERCISE
        in_grads = ig = prev = None  # (drop our references: a leaf may then keep the array)
        if not retain_graph:
            ctx.__dict__.clear()  # drop saved arrays; `inputs` falls back to None: "freed"


def _sum_grads(prev, ig):
    """prev + ig, two gradients of one tensor. Written into prev's own memory when nothing but
    the engine's `grads` dict can see it (a NumPy array that is no view, referenced by no
    Function, leaf or other entry: the count of references says so, as in steal_or_copy), which
    saves an allocation and a pass per accumulation (chapter 12); else a new array."""
    if type(prev) is np.ndarray and prev.base is None and sys.getrefcount(prev) <= _DICT_ONLY:
        prev += ig
        return prev
    return prev + ig


def _refcount_in_sum_grads() -> int:
    """What sys.getrefcount(prev) reports inside _sum_grads when `grads` and the caller's local
    `prev` are the only holders (measured: the number differs between Python versions)."""
    grads = {0: np.empty(1)}
    prev = grads.get(0)
    return _probe(prev, None)


def _probe(prev, ig):
    return sys.getrefcount(prev)


_DICT_ONLY = _refcount_in_sum_grads()


# ---- checks and error messages --------------------------------------------------------------
def _root_grad(root, gradient):
    """d(root)/d(root): ones for a one-element root, else `gradient`, checked against root."""
    if not root.requires_grad:
        raise RuntimeError(
            f"backward() on a tensor of shape {tuple(root.shape)} that does not require grad "
            "and has no graph: no input had requires_grad=True (or it ran under no_grad())"
        )
    made_by = f" (the output of {root._ctx.name})" if root._ctx is not None else ""
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a scalar (one-element) output; got shape "
                f"{tuple(root.shape)}{made_by}. Pass gradient= a tensor of that shape."
            )
        return root.xp.ones_like(root.data)
    is_tensor = isinstance(gradient, _Tensor)
    g = gradient.data if is_tensor else root.xp.asarray(gradient)
    if g.shape != root.data.shape:
        raise RuntimeError(
            f"backward(): gradient has shape {tuple(g.shape)} but the output{made_by} has "
            f"shape {tuple(root.shape)}; they must match"
        )
    if is_tensor and gradient.device != root.device:
        raise RuntimeError(
            f"backward(): gradient is on {gradient.device} but the output{made_by} is on "
            f"{root.device}"
        )
    return g.astype(root.data.dtype, copy=False)


def _checked_grad(ctx, inp, ig):
    """A Function's gradient for input `inp`: its shape must match; its dtype becomes inp's."""
    if ig.shape != inp.data.shape:
        raise RuntimeError(
            f"{ctx.name}.backward returned a gradient of shape {tuple(ig.shape)} for an "
            f"input of shape {tuple(inp.shape)}"
        )
    if ig.dtype != inp.data.dtype:  # e.g. a float64 constant met a float32 input
        ig = ig.astype(inp.data.dtype)
    return ig


def _mixed_devices(op, args):
    shown = [t for t in args if isinstance(t, _Tensor)]
    raise RuntimeError(
        f"{op}: expected all tensors on the same device, got devices "
        f"{[t.device for t in shown]} for shapes {[tuple(t.shape) for t in shown]}; move "
        "them with .to(device)"
    )


def _not_broadcastable(op, args, error):
    """Re-raise a forward's ValueError, naming the op, shapes and dtypes when it is about
    broadcasting (anything else passes through unchanged)."""
    if "broadcast" not in str(error):
        raise error
    desc = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in args if isinstance(a, _Tensor))
    raise RuntimeError(
        f"{op}: the shapes of its inputs do not broadcast together: {desc} ({error})"
    ) from error
