"""How a Tensor prints: PyTorch's layout for the array inside `tensor(...)`."""

from __future__ import annotations

import numpy as np


def format_array(arr) -> str:
    """PyTorch's layout: floats with 4 decimals, `1.` when all are whole numbers, scientific
    notation when magnitudes span more than 1e3 (or pass 1e8); columns aligned; summarized
    with `...` past 1000 elements."""
    opts = dict(separator=", ", prefix="tensor(", threshold=1000, edgeitems=3, max_line_width=80)
    if arr.dtype.kind != "f" or arr.size == 0:
        return np.array2string(arr, **opts)
    shown = arr
    if arr.size > 1000:  # only the printed corners decide the format, as in PyTorch
        for ax in range(arr.ndim):
            if shown.shape[ax] > 6:
                shown = np.concatenate([shown.take(range(3), ax), shown.take(range(-3, 0), ax)], ax)
    finite = shown[np.isfinite(shown)].astype(np.float64)
    mags = np.abs(finite[finite != 0])
    whole = bool((finite == np.round(finite)).all())
    sci = mags.size > 0 and (
        mags.max() > 1e8 or (not whole and (mags.max() / mags.min() > 1e3 or mags.min() < 1e-4))
    )
    spec = ".4e" if sci else (".0f" if whole else ".4f")

    def fmt(v):
        return str(v) if not np.isfinite(v) else format(v, spec) + ("." if spec == ".0f" else "")

    probes = [finite.min(), finite.max()] if finite.size else []
    probes += [v for v in (np.inf, -np.inf) if (shown == v).any()]
    probes += [np.nan] if np.isnan(shown).any() else []
    width = max(len(fmt(v)) for v in probes)
    return np.array2string(arr, formatter={"float_kind": lambda v: fmt(v).rjust(width)}, **opts)
