"""Batches for sequence-to-sequence training with teacher forcing (chapter 10).

Teacher forcing: the decoder reads the true previous target token at every position, so a
whole sentence trains in one forward pass. For a target y = y_1 .. y_n:

    tgt_in  = BOS y_1 ... y_n          what the decoder reads
    tgt_out = y_1 ... y_n EOS          what it must predict at the same positions

Rows are padded on the right to the longest sentence of the batch: the inputs (src, tgt_in)
with pad_id (the models mask those positions), the labels tgt_out with ignore_index (-100,
cross_entropy's default, so padded positions add nothing to the loss).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["make_teacher_forcing_batch"]


def make_teacher_forcing_batch(
    pairs, bos_id: int, eos_id: int, pad_id: int, ignore_index: int = -100, device="cpu"
):
    """pairs: a list of (source ids, target ids) (sequences of ints, without BOS/EOS) ->
    (src (B, S), tgt_in (B, T), tgt_out (B, T)) int64 Tensors, T = longest target + 1."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("make_teacher_forcing_batch: received no pairs")
    if any(len(s) == 0 for s, _ in pairs):
        raise ValueError("make_teacher_forcing_batch: a source sentence is empty")
    B = len(pairs)
    S = max(len(s) for s, _ in pairs)
    T = max(len(t) for _, t in pairs) + 1
    src = np.full((B, S), pad_id, dtype=np.int64)
    tgt_in = np.full((B, T), pad_id, dtype=np.int64)
    tgt_out = np.full((B, T), ignore_index, dtype=np.int64)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = s
        # BEGIN EXERCISE ch10: teacher_forcing - tgt_in[i] = BOS + t, tgt_out[i] = t + EOS
        tgt_in[i, : len(t) + 1] = [bos_id, *t]
        tgt_out[i, : len(t) + 1] = [*t, eos_id]
        # END EXERCISE
    return tuple(Tensor._wrap(backend.to_device(a, device)) for a in (src, tgt_in, tgt_out))
