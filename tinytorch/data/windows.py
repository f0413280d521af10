"""Consecutive windows over one long token stream, for truncated backpropagation through time.

    for x, y in tbptt_batches(ids, batch_size=32, seq_len=64):   # x, y: (32, 64) int64
        ...

The stream is cut into B equal streams read side by side (row b of every window reads stream
b), and each window continues the previous one, so a recurrent model's state at the end of
window k is the right initial state for window k+1 (chapter 04). `TBPTTLoader` is the same
windows as a re-iterable data source for `tinytorch.train.train` / `evaluate`: each batch is
(x, y, first), where first is True for the first window of a pass (a fresh state).
`spread_windows` takes B windows spread evenly over a text instead (one fixed batch to measure
on). `random_windows` draws B windows at random positions (nanoGPT's get_batch: chapters 07
and 08's GPT batches).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["tbptt_batches", "TBPTTLoader", "spread_windows", "random_windows"]


def tbptt_batches(ids, batch_size: int, seq_len: int, device="cpu"):
    """Consecutive (x, y) windows (B, T) over B parallel streams of the int array `ids`.

    With n = (len(ids) - 1) // B characters per stream, stream b is ids[b n : (b + 1) n] and
    window k holds its characters k T .. k T + T - 1 (only whole windows); y is x shifted by
    one character (the next one in the text). Row b of window k+1 continues row b of window k.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = (len(ids) - 1) // batch_size  # characters per stream
    if n < seq_len:
        raise ValueError(
            f"tbptt_batches: {len(ids)} tokens are too few for {batch_size} "
            f"streams of at least seq_len={seq_len}"
        )
    xp = backend.get_xp(device)
    # BEGIN EXERCISE ch04: tbptt_batches - B streams of n tokens; yield windows (x, y) of T
    xs = ids[: n * batch_size].reshape(batch_size, n)
    ys = ids[1 : n * batch_size + 1].reshape(batch_size, n)
    for s in range(0, n - seq_len + 1, seq_len):
        yield (
            Tensor._wrap(xp.asarray(xs[:, s : s + seq_len])),
            Tensor._wrap(xp.asarray(ys[:, s : s + seq_len])),
        )
    # END EXERCISE


class TBPTTLoader:
    """tbptt_batches as a data source that can be read many times: every pass yields
    (x, y, first) for all windows, first True on the first one. len() is windows per pass."""

    def __init__(self, ids, batch_size: int, seq_len: int, device="cpu"):
        self.ids, self.batch_size, self.seq_len, self.device = ids, batch_size, seq_len, device

    def __iter__(self):
        for k, (x, y) in enumerate(
            tbptt_batches(self.ids, self.batch_size, self.seq_len, self.device)
        ):
            yield x, y, k == 0

    def __len__(self) -> int:
        n = (len(self.ids) - 1) // self.batch_size
        return n // self.seq_len


def spread_windows(ids, batch_size: int, seq_len: int, device="cpu"):
    """One batch (x, y), each (B, T): B windows of T ids starting at evenly spaced positions
    b * (len(ids) // B) of `ids`, y shifted by one as in tbptt_batches."""
    ids = np.asarray(ids, dtype=np.int64)
    step = len(ids) // batch_size
    if step < seq_len + 1:
        raise ValueError(
            f"spread_windows: {len(ids)} tokens are too few for {batch_size} windows of "
            f"seq_len={seq_len} (+1 for the targets)"
        )
    idx = np.arange(batch_size)[:, None] * step + np.arange(seq_len + 1)
    xp = backend.get_xp(device)
    return Tensor._wrap(xp.asarray(ids[idx[:, :-1]])), Tensor._wrap(xp.asarray(ids[idx[:, 1:]]))


def random_windows(ids, rng, batch_size: int, block_size: int, device="cpu"):
    """nanoGPT's get_batch: (x, y), each (B, T) int64, B windows of T ids of the int array
    `ids` at positions drawn by the NumPy Generator `rng`; y is x shifted by one."""
    ix = rng.integers(0, len(ids) - block_size - 1, batch_size)
    x = np.stack([ids[i : i + block_size] for i in ix])
    y = np.stack([ids[i + 1 : i + 1 + block_size] for i in ix])
    xp = backend.get_xp(device)
    return Tensor._wrap(xp.asarray(x)), Tensor._wrap(xp.asarray(y))
