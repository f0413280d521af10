"""`Module` and `Parameter`: PyTorch's way of bundling weights with the code that uses them.

Assigning a Parameter or a Module to an attribute registers it (in `_parameters` or
`_modules`); `state_dict` walks those registries with dotted names ("0.weight",
"transformer.h.0.ln_1.bias"), so weights move between tinytorch and PyTorch as a dict of
arrays.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as a weight; requires grad by default."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.zeros((0,), dtype=np.float32)
        arr = data.data if isinstance(data, Tensor) else data
        Tensor.__init__(self, arr, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model. Subclasses set attributes in __init__ and
    define forward(); calling the module calls forward."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration -----------------------------------------------------------------
    def __setattr__(self, name, value):
        """`self.name = value` registers what the module owns, as PyTorch does: a Parameter
        goes into self._parameters, a Module into self._modules (and is removed from the
        other registries and from the plain attributes); a Tensor or None assigned to the
        name of a buffer replaces the buffer; anything else is a plain attribute."""
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called; call "
                "super().__init__() first in your module's __init__"
            )
        # BEGIN EXERCISE ch03: module_setattr - Parameter into _parameters, Module into _modules
        if name in self._buffers and (value is None or isinstance(value, Tensor)):
            self._buffers[name] = value  # assigning to a buffer keeps it a buffer, as in torch
            return
        for reg in (self._parameters, self._buffers, self._modules):
            reg.pop(name, None)  # a name lives in one place: the new value replaces the old
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)  # else the plain attribute would hide the registry
        # END EXERCISE

    def __getattr__(self, name):  # only called when normal lookup fails
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d and name in d[reg]:
                return d[reg][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}")

    def __delattr__(self, name):
        for reg in (self._parameters, self._buffers, self._modules):
            if name in reg:
                del reg[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """A non-trainable tensor that moves with the module (and is saved if persistent)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)

    def register_parameter(self, name: str, param) -> None:
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def add_module(self, name: str, module) -> None:
        if module is None:
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, module)

    # ---- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """(name, module) for self and every submodule, depth first in registration order
        (PyTorch's order, which fixes the order of parameters() and of optimizer states).
        A module registered twice is listed once."""
        stack, seen = [(prefix, self)], set()
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            kids = [
                (f"{name}.{k}" if name else k, m) for k, m in mod._modules.items() if m is not None
            ]
            stack.extend(reversed(kids))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(dotted name, Parameter): each module's own parameters in registration order, the
        modules in named_modules' order ("0.weight", "0.bias", "2.weight", ...); a parameter
        shared by two modules (tied weights) is listed once, under its first name."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        # BEGIN EXERCISE ch03: named_parameters - yield (dotted name, p), each Parameter once
        for mname, mod in mods:
            for pname, p in mod._parameters.items():
                if p is None or id(p) in seen:  # shared (tied) weights appear once
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p
        # END EXERCISE

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self):
        for mname, mod in self.named_modules():
            for bname, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    # ---- modes, devices, gradients ------------------------------------------------------
    def train(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def apply(self, fn):
        """Call fn on every submodule (children first) and on self, as PyTorch does."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def _apply_to_tensors(self, fn):
        """Replace every parameter's and buffer's array by fn(array), in place."""
        for mod in self.modules():
            for p in mod._parameters.values():
                if p is not None:
                    p.data = fn(p.data)
                    if p.grad is not None:
                        p.grad.data = fn(p.grad.data)
            for b in mod._buffers.values():
                if b is not None:
                    b.data = fn(b.data)
        return self

    def to(self, *args, dtype=None, device=None):
        """Move parameters and buffers to a device and/or a floating dtype, in place."""
        for a in args:
            if isinstance(a, str) and (a in backend.DEVICES or a.startswith("cuda")):
                device = a
            else:
                dtype = a
        if device is not None:
            device = backend.check_device(device)
            self._apply_to_tensors(lambda a: backend.to_device(a, device))
        if dtype is not None:
            dt = np.dtype(dtype)
            self._apply_to_tensors(lambda a: a.astype(dt) if a.dtype.kind == "f" else a)
        return self

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ---- saving and loading -------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "") -> OrderedDict:
        """Dotted names -> Tensors: each module's parameters, then its persistent buffers,
        then its children's, recursively (PyTorch's keys and order). Unlike torch's default
        (keep_vars=False) the values are the Parameters themselves, so `sd[k].grad` works;
        use `.detach()` (or tinytorch's `to_numpy`) to get plain arrays."""
        out = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p
        skip = self.__dict__.get("_non_persistent", ())
        for name, b in self._buffers.items():
            if b is not None and name not in skip:
                out[prefix + name] = b
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(out, prefix + name + ".")
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays (NumPy arrays, Tensors or torch tensors) into the parameters/buffers.

        Raises a RuntimeError naming every missing, unexpected and mis-shaped key (with
        strict=False only shapes must match). Returns (missing_keys, unexpected_keys), a named
        tuple as in PyTorch. Values take the dtype and device of the model's tensors.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        arrays, wrong = {}, []
        for k, target in own.items():
            if k not in state_dict:
                continue
            arr = _as_numpy(state_dict[k])
            if tuple(arr.shape) != tuple(target.shape):
                wrong.append(
                    f"size mismatch for {k}: the state_dict has shape "
                    f"{tuple(arr.shape)}, the model expects {tuple(target.shape)}"
                )
            arrays[k] = arr
        problems = list(wrong)
        if strict:
            problems += [f"missing key: {k}" for k in missing]
            problems += [f"unexpected key: {k}" for k in unexpected]
        if problems:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                + "\n  ".join(problems)
            )
        with no_grad():
            for k, arr in arrays.items():
                t = own[k]
                t.data = backend.to_device(arr.astype(t.dtype, copy=True), t.device)
        return IncompatibleKeys(missing, unexpected)

    # ---- calling and printing -----------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        """PyTorch's layout: extra_repr, then one "(name): child" line per child."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({k}): " + _addindent(repr(m), 2) for k, m in self._modules.items() if m is not None
        ]
        head = self._get_name() + "("
        if len(extra_lines) == 1 and not child_lines:
            return head + extra_lines[0] + ")"
        lines = extra_lines + child_lines
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def get_submodule(self, target: str) -> Module:
        """The submodule at a dotted path ("transformer.h.0.attn")."""
        mod = self
        for part in target.split(".") if target else []:
            if part not in mod._modules:
                raise AttributeError(
                    f"{mod._get_name()} has no submodule {part!r} (looking up {target!r})"
                )
            mod = mod._modules[part]
        return mod


class IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return (
        lines[0] + "\n" + "\n".join((" " * spaces + ln) if ln.strip() else "" for ln in lines[1:])
    )


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, Tensor):
        return backend.to_device(value.data, "cpu")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    if backend.is_cupy(value):
        return backend.to_device(value, "cpu")
    return np.asarray(value)
