"""`Optimizer`: parameter groups, per-parameter state, zero_grad, state_dict, as in PyTorch.

An optimizer holds `param_groups` (a list of dicts: "params" plus hyperparameters such as
"lr", which a scheduler may change between steps) and `state` (parameter -> dict of arrays,
e.g. Adam's moments). `step()` updates each parameter's array `p.data` in place, outside any
graph: an update is not something we ever differentiate.

`state_dict()` has PyTorch's layout, parameters replaced by their index in group order:

    {"state": {0: {"step": 3, "exp_avg": Tensor, ...}, ...},
     "param_groups": [{"lr": 0.001, ..., "params": [0, 1, 2]}, ...]}

so a state saved by torch (tensors) or by tinytorch (Tensors or NumPy arrays) loads in either.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import backend
from ..tensor import Tensor


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()  # a default that the user must give (as torch.optim.optimizer.required)


_HYPERPARAMETER_NAMES = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "momentum": "momentum value",
    "weight_decay": "weight_decay value",
}


def check_non_negative(**hyperparameters: float) -> None:
    """Raise PyTorch's ValueError ("Invalid learning rate: -1") for any value below zero."""
    for name, value in hyperparameters.items():
        if value < 0.0:
            raise ValueError(f"Invalid {_HYPERPARAMETER_NAMES[name]}: {value}")


class Optimizer:
    """Base class: subclasses pass their defaults and implement `step()`."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}  # parameter -> dict; Tensors hash by identity
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of "
                "Tensors or dicts, but got a Tensor; wrap it in a list"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group {"params": [...], hyperparameters...}; missing ones take the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but param {i} of group "
                    f"{len(self.param_groups)} is a {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"can't optimize a non-leaf Tensor (param {i}, shape "
                    f"{tuple(p.shape)}): optimize the leaves it was computed from"
                )
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required "
                    f"optimization parameter {name}"
                )
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(
                "some parameters appear in more than one parameter group (or twice "
                "in one); each parameter may be optimized once"
            )
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (set_to_none=True, the default) or fill it with zeros."""
        for _, p in self._params_with_grad():
            if set_to_none:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def step(self, closure=None):
        raise NotImplementedError

    def _params_with_grad(self):
        """(group, p) for every parameter whose .grad is set, in group order: what step() and
        zero_grad() visit (a parameter without a gradient is left as it is)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield group, p

    def _closure_loss(self, closure):
        if closure is None:
            return None
        from ..autograd import enable_grad

        with enable_grad():
            return closure()

    # ---- saving and loading -------------------------------------------------------------
    def state_dict(self) -> dict:
        """PyTorch's layout (see the module docstring). Arrays are shared, not copied."""
        index, groups = {}, []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state; values may be Tensors, NumPy arrays or torch
        tensors. Floating state takes each parameter's dtype and device."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        for i, (ours, theirs) in enumerate(zip(self.param_groups, saved_groups)):
            if len(ours["params"]) != len(theirs["params"]):
                raise ValueError(
                    f"loaded state dict's parameter group {i} has "
                    f"{len(theirs['params'])} parameters, this optimizer's has "
                    f"{len(ours['params'])}"
                )
        index_to_param = {}
        for ours, theirs in zip(self.param_groups, saved_groups):
            for idx, p in zip(theirs["params"], ours["params"]):
                index_to_param[idx] = p
        new_state = {}
        for idx, entry in state_dict["state"].items():
            key = int(idx) if isinstance(idx, str) and idx.isdigit() else idx
            if key not in index_to_param:
                raise KeyError(
                    f"loaded state dict has state for parameter index {idx!r}, "
                    f"which no parameter group lists"
                )
            p = index_to_param[key]
            new_state[p] = {k: _restore(k, v, p) for k, v in entry.items()}
        self.state = new_state
        for ours, theirs in zip(self.param_groups, saved_groups):
            for k, v in theirs.items():
                if k != "params":
                    ours[k] = copy.deepcopy(v)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


def _restore(key, value, param):
    """One saved state value as tinytorch holds it: step -> int, arrays -> a Tensor."""
    if key == "step":
        return int(round(float(value.item() if hasattr(value, "item") else value)))
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, Tensor):
        arr = value.data
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        arr = value.detach().cpu().numpy()
    else:
        arr = value
    if not backend.is_cupy(arr):
        arr = np.asarray(arr)
    arr = backend.to_device(arr, param.device)
    # astype copies: the loaded state never aliases the caller's arrays
    arr = arr.astype(param.dtype if arr.dtype.kind == "f" else arr.dtype)
    if tuple(arr.shape) != tuple(param.shape):
        raise ValueError(
            f"optimizer state {key!r} has shape {tuple(arr.shape)}, but its "
            f"parameter has shape {tuple(param.shape)}"
        )
    return Tensor._wrap(arr)
