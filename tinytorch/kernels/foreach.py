"""Multi-tensor ("foreach") kernels on the CPU (chapter 12; kernels/foreach.cpp): one call for
every tensor of a list, as PyTorch's fused optimizers and torch._foreach_* do.

Raw arrays (lists of NumPy float32 C-contiguous arrays):

    adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr, beta1, beta2,
              eps, weight_decay, decoupled, maximize)     # in place; max_exp_avg_sqs or None
    sum_squares(arrays) -> float                         # sum of x^2 over all, in double
    scale_(arrays, coef)                                 # x *= coef for each, in place

adam_step is tinytorch.optim.adam's update (weight decay, then adam_update) for a whole
parameter group in one pass over memory, the parameters cut into pieces spread over the OpenMP
threads; it does the composed update's float32 operations in the same order, so the two agree
bit for bit (tests/test_ch12_fused.py). `supports(arrays)` says whether the kernels can take a
list here (NumPy float32, C-contiguous, the module built); Adam.step and clip_grad_norm_ ask it
and otherwise run the composed NumPy code. tinytorch.kernels.set_fused(False) turns them off.
"""

from __future__ import annotations

import numpy as np

from .common import lib, runs_on

__all__ = ["supports", "adam_step", "sum_squares", "scale_"]


def _address(a) -> int:
    return a.__array_interface__["data"][0]


def _table(arrays):
    """An int64 array of the arrays' addresses (kept alive by the caller's list)."""
    return np.fromiter((_address(a) for a in arrays), np.int64, len(arrays))


def _sizes(arrays):
    return np.fromiter((a.size for a in arrays), np.int64, len(arrays))


def supports(*lists) -> bool:
    """Whether every array of every list is a C-contiguous NumPy float32 array (and the kernel
    module builds here, and the fused kernels are switched on)."""
    from . import fused_enabled

    if not fused_enabled():
        return False
    for arrays in lists:
        for a in arrays:
            if type(a) is not np.ndarray or a.dtype != np.float32 or not a.flags.c_contiguous:
                return False
    return runs_on("cpu")


def _check(lists, where):
    n = len(lists[0])
    for arrays in lists:
        if len(arrays) != n:
            raise ValueError(f"{where}: the lists have different lengths ({n}, {len(arrays)})")
    for i in range(n):
        shapes = {a.shape for a in (arrays[i] for arrays in lists)}
        if len(shapes) != 1:
            raise ValueError(f"{where}: tensor {i} has different shapes {sorted(shapes)}")
    if not supports(*lists):
        raise TypeError(f"{where}: every array must be a C-contiguous NumPy float32 array")


def adam_step(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs,
    steps,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay=0.0,
    decoupled=False,
    maximize=False,
) -> None:
    """One Adam (decoupled=False) or AdamW (decoupled=True) update of every parameter, in
    place. steps: each parameter's step count t (from 1, already incremented)."""
    lists = [params, grads, exp_avgs, exp_avg_sqs]
    if max_exp_avg_sqs is not None:
        lists.append(max_exp_avg_sqs)
    _check(lists, "foreach adam_step")
    if not params:
        return
    # lr / bias_correction1 and sqrt(bias_correction2) per parameter, in Python floats as
    # adam_update computes them (so the float32 constants are the same)
    step_sizes = np.array([lr / (1 - beta1**t) for t in steps], np.float64)
    bc2_sqrts = np.array([(1 - beta2**t) ** 0.5 for t in steps], np.float64)
    tables = [_table(a) for a in lists]
    sizes = _sizes(params)
    lib().foreach_adam_step_cpu(
        _address(tables[0]),
        _address(tables[1]),
        _address(tables[2]),
        _address(tables[3]),
        _address(tables[4]) if max_exp_avg_sqs is not None else 0,
        _address(sizes),
        _address(step_sizes),
        _address(bc2_sqrts),
        len(params),
        float(beta1),
        float(beta2),
        float(eps),
        float(weight_decay),
        float(1 - lr * weight_decay),
        bool(decoupled),
        bool(maximize),
    )


def sum_squares(arrays) -> float:
    """sum(x^2) over every element of every array, accumulated in double."""
    _check([arrays], "foreach sum_squares")
    if not arrays:
        return 0.0
    table, sizes = _table(arrays), _sizes(arrays)
    return float(lib().foreach_sum_squares_cpu(_address(table), _address(sizes), len(arrays)))


def scale_(arrays, coef) -> None:
    """x *= coef for every array, in place (coef rounded to float32, as NumPy would)."""
    _check([arrays], "foreach scale_")
    if not arrays:
        return
    table, sizes = _table(arrays), _sizes(arrays)
    lib().foreach_scale_cpu(_address(table), _address(sizes), len(arrays), float(coef))
