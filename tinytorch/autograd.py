"""Reverse-mode automatic differentiation in one screen.

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
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from .backend import c_copy as _c_copy

_Tensor = None  # set by tinytorch.tensor (avoids an import cycle)
_grad_enabled = True


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


def unbroadcast(grad, shape):
    """The backward of broadcasting: sum `grad` down to `shape`.

    Broadcasting prepends dimensions and stretches size-1 ones; its gradient sums over exactly
    those dimensions. Every binary op's backward goes through here.
    """
    if grad.shape == shape:
        return grad
    # BEGIN EXERCISE ch01: sum grad over the dims broadcasting added or stretched, reshape to shape
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)
    # END EXERCISE


def _mixed_devices(op, args):
    tensors = [t for t in args if isinstance(t, _Tensor)]
    raise RuntimeError(
        f"{op}: expected all tensors on the same device, got devices "
        f"{[t.device for t in tensors]} for shapes {[tuple(t.shape) for t in tensors]}; move "
        "them with .to(device)"
    )


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
            out = fn.forward(*raw, **kwargs)
        except ValueError as e:  # (free when nothing is raised) name the op, shapes, dtypes
            if "broadcast" not in str(e):
                raise
            desc = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in args if isinstance(a, Tensor))
            raise RuntimeError(
                f"{cls.__name__}: the shapes of its inputs do not broadcast together: {desc} ({e})"
            ) from e
        if isinstance(out, np.generic):  # NumPy reductions return scalars; keep arrays
            out = np.asarray(out)
        t = Tensor.__new__(Tensor)
        t.data, t.grad, t._ctx = out, None, None
        t.requires_grad = needs
        if needs:
            fn.inputs = args
            t._ctx = fn
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


def _topological_order(root):
    """Tensors reachable from `root` through grad-requiring inputs, inputs before outputs."""
    Tensor = _Tensor
    order, seen = [], set()
    stack = [(root, False)]
    # BEGIN EXERCISE ch01: iterative depth-first search; append a node after all its inputs
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        ctx = node._ctx
        if ctx is None:
            continue
        if ctx.inputs is None:
            raise RuntimeError(
                f"Trying to backward through the graph a second time (op {ctx.name}, output "
                f"shape {tuple(node.shape)}): its saved values were freed after the first "
                "backward. Call backward(retain_graph=True) the first time if you need to."
            )
        for inp in ctx.inputs:
            if isinstance(inp, Tensor) and inp.requires_grad and id(inp) not in seen:
                stack.append((inp, False))
    # END EXERCISE
    return order


def _refs_of_a_local():
    a = np.empty(0)
    return sys.getrefcount(a)


_UNSHARED_REFS = _refs_of_a_local()  # what getrefcount reports for an array only `g` holds


def backward(root, gradient=None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into every leaf's `.grad` (see Tensor.backward)."""
    Tensor = _Tensor
    if not root.requires_grad:
        raise RuntimeError(
            f"backward() on a tensor of shape {tuple(root.shape)} that does not require grad "
            "and has no graph: no input had requires_grad=True (or it ran under no_grad())"
        )
    xp = root.xp
    made_by = f" (the output of {root._ctx.name})" if root._ctx is not None else ""
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a scalar (one-element) output; got shape "
                f"{tuple(root.shape)}{made_by}. Pass gradient= a tensor of that shape."
            )
        g = xp.ones_like(root.data)
    else:
        g = gradient.data if isinstance(gradient, Tensor) else xp.asarray(gradient)
        if g.shape != root.data.shape:
            raise RuntimeError(
                f"backward(): gradient has shape {tuple(g.shape)} but the output{made_by} has "
                f"shape {tuple(root.shape)}; they must match"
            )
        if isinstance(gradient, Tensor) and gradient.device != root.device:
            raise RuntimeError(
                f"backward(): gradient is on {gradient.device} but the output{made_by} is on "
                f"{root.device}"
            )
        g = g.astype(root.data.dtype, copy=False)

    order = _topological_order(root)
    grads = {id(root): g}
    for node in reversed(order):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if isinstance(g, np.generic):  # NumPy turns 0-d results into scalars: keep arrays
            g = np.asarray(g)
        ctx = node._ctx
        if ctx is None:  # a leaf: accumulate (never alias an array another leaf may hold)
            if g.dtype != node.data.dtype:
                g = g.astype(node.data.dtype)
            if node.grad is None:
                # keep the array itself when nothing else can see it (not a view, no other
                # reference), as PyTorch "steals" such gradients; otherwise store a copy
                own = g.base is None and sys.getrefcount(g) <= _UNSHARED_REFS
                node.grad = Tensor._wrap(g if own else _c_copy(g))
            else:
                node.grad = Tensor._wrap(node.grad.data + g)
            continue
        in_grads = ctx.backward(g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for inp, ig in zip(ctx.inputs, in_grads):
            if ig is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                continue
            if ig.shape != inp.data.shape:
                raise RuntimeError(
                    f"{ctx.name}.backward returned a gradient of shape {tuple(ig.shape)} for an "
                    f"input of shape {tuple(inp.shape)}"
                )
            if ig.dtype != inp.data.dtype:  # e.g. a float64 constant met a float32 input
                ig = ig.astype(inp.data.dtype)
            prev = grads.get(id(inp))
            grads[id(inp)] = ig if prev is None else prev + ig
        in_grads = ig = prev = None  # (drop our references: a leaf may then keep the array)
        if not retain_graph:
            ctx.__dict__.clear()  # drop saved arrays; `inputs` falls back to None: "freed"


class GradcheckError(AssertionError):
    pass


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Compare autograd's gradients with central finite differences, in float64.

    `fn(*inputs)` returns a Tensor (or a tuple of Tensors). To check all outputs at once we
    differentiate L = sum_k <out_k, r_k> for fixed random r_k: its gradient is every output's
    vector-Jacobian product with r, so one backward and two forwards per input element suffice.
    Inputs that require grad must be float64. On failure the message names the input and its
    worst element, with the analytic and numerical values.
    """
    Tensor = _Tensor
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs")
    gen = np.random.default_rng()

    def outputs():
        out = fn(*inputs)
        return out if isinstance(out, tuple | list) else (out,)

    outs = [o for o in outputs() if isinstance(o, Tensor)]
    weights = [o.xp.asarray(gen.standard_normal(o.shape)) for o in outs]

    def scalar(outs_):
        return sum(float((o.data * w).sum()) for o, w in zip(outs_, weights))

    for i in checked:
        inputs[i].grad = None
    loss = None
    for o, w in zip(outs, weights):
        if o.requires_grad:
            term = (o * Tensor._wrap(w)).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()

    for i in checked:
        x = inputs[i]
        analytic = x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
        numeric = np.zeros(x.shape)
        arr = x.data  # perturbed in place, element by element (works for any memory layout)
        for j in np.ndindex(*x.shape):
            orig = float(arr[j])
            arr[j] = orig + eps
            with no_grad():
                plus = scalar(outputs())
            arr[j] = orig - eps
            with no_grad():
                minus = scalar(outputs())
            arr[j] = orig
            numeric[j] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if (err > 0).any() or not np.isfinite(analytic).all():
            k = tuple(int(v) for v in np.unravel_index(int(np.argmax(err)), x.shape))
            msg = (
                f"gradcheck failed for input {i} (shape {tuple(x.shape)}): at index {k} "
                f"analytic {analytic[k]:.10g} vs numerical {numeric[k]:.10g} "
                f"(atol={atol}, rtol={rtol})"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
