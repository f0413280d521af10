"""DataLoader: batches of examples, shuffled by a seeded generator, with collate functions.

    loader = DataLoader(dataset, batch_size=32, shuffle=True, generator=0)
    for x, y in loader:      # one epoch: every example exactly once
        ...

Each pass (epoch) draws a new permutation from the generator, so a seed fixes the whole
sequence of epochs. A TensorDataset is batched by indexing its tensors once per batch (fast);
other datasets are read example by example and merged by `collate_fn`.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor
from .dataset import TensorDataset, as_generator


def default_collate(batch):
    """Merge a list of examples into a batch, as torch's default_collate: Tensors and arrays
    are stacked (B, ...), Python ints -> int64 (B,), floats -> float64 (B,), strings stay a
    list, and tuples / lists / dicts are collated field by field."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        xp = elem.xp
        return Tensor._wrap(xp.stack([b.data for b in batch]))
    if isinstance(elem, np.ndarray | np.generic):
        return Tensor._wrap(np.stack(batch))
    if isinstance(elem, bool):
        return Tensor._wrap(np.array(batch, dtype=bool))
    if isinstance(elem, int):
        return Tensor._wrap(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor._wrap(np.array(batch, dtype=np.float64))
    if isinstance(elem, str | bytes):
        return list(batch)
    if isinstance(elem, dict):
        return {k: default_collate([b[k] for b in batch]) for k in elem}
    if isinstance(elem, tuple | list):
        if any(len(b) != len(elem) for b in batch):
            raise RuntimeError(
                "default_collate: each example in the batch must have the same number of fields"
            )
        return [default_collate(list(field)) for field in zip(*batch)]
    raise TypeError(f"default_collate: cannot batch examples of type {type(elem).__name__}")


def pad_sequence(
    sequences, batch_first: bool = False, padding_value=0, padding_side: str = "right"
) -> Tensor:
    """Pad 1-D (or (L, *)) sequences of different lengths into one tensor:
    (T_max, B, *) or, with batch_first, (B, T_max, *). As torch.nn.utils.rnn.pad_sequence."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    arrays = [s.data if isinstance(s, Tensor) else np.asarray(s) for s in sequences]
    if not arrays:
        raise ValueError("pad_sequence: received an empty list of sequences")
    xp = backend.xp_of(arrays[0])
    t_max = max(a.shape[0] for a in arrays)
    dtype = arrays[0].dtype if arrays[0].size or arrays[0].dtype != np.float64 else np.int64
    out = xp.full((len(arrays), t_max) + arrays[0].shape[1:], padding_value, dtype=dtype)
    for i, a in enumerate(arrays):
        n = a.shape[0]
        if padding_side == "right":
            out[i, :n] = a
        elif n:
            out[i, t_max - n :] = a
    if not batch_first:
        out = xp.ascontiguousarray(xp.swapaxes(out, 0, 1))
    return Tensor._wrap(out)


class PadCollate:
    """collate_fn for variable-length sequences (token ids, sentences of a classifier, the
    source and target of a translation pair).

    An example is a sequence or a tuple of fields; every field that is a sequence (list, 1-D
    array or Tensor) is right-padded with `padding_value` to the longest in the batch,
    giving (B, T_max) int64; other fields are collated by default_collate. With
    return_lengths=True each padded field comes as (padded, lengths (B,)).
    """

    def __init__(self, padding_value: int = 0, return_lengths: bool = False):
        self.padding_value, self.return_lengths = padding_value, return_lengths

    def _pad(self, seqs):
        padded = pad_sequence(seqs, batch_first=True, padding_value=self.padding_value)
        if not self.return_lengths:
            return padded
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        return padded, Tensor._wrap(lengths)

    def __call__(self, batch):
        if _is_sequence(batch[0]):
            return self._pad(batch)
        return [
            self._pad(list(f)) if _is_sequence(f[0]) else default_collate(list(f))
            for f in zip(*batch)
        ]


def _is_sequence(x) -> bool:
    if isinstance(x, list):
        return True
    if isinstance(x, Tensor | np.ndarray) or backend.is_cupy(x):
        return x.ndim == 1
    return False


class DataLoader:
    """Iterate over `dataset` in batches of `batch_size` (torch.utils.data.DataLoader).

    shuffle: draw a new order every epoch from `generator` (a seed, a numpy Generator, or
    None for tinytorch's global generator). drop_last: leave out the last, smaller batch.
    collate_fn: merges a list of examples (default_collate; PadCollate for sequences).
    """

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        collate_fn=None,
        generator=None,
    ):
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
            raise ValueError(f"batch_size should be a positive integer, got {batch_size!r}")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.collate_fn = collate_fn
        self.generator = as_generator(generator) if shuffle else None

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_indices(self):
        """The index arrays of one epoch's batches: a new self.generator.permutation(n) when
        shuffling (else 0..n-1), cut into batch_size pieces (the last one shorter, or left out
        with drop_last); batch_size None means batches of one."""
        # BEGIN EXERCISE ch03: batch_indices - yield one epoch's index arrays, batch_size each
        n = len(self.dataset)
        order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        bs = self.batch_size or 1
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            yield order[start : start + bs]
        # END EXERCISE

    def __iter__(self):
        fast = isinstance(self.dataset, TensorDataset) and self.collate_fn is None
        for idx in self.batch_indices():
            if self.batch_size is None:  # no batching: one example at a time
                yield self.dataset[int(idx[0])]
            elif fast:
                yield [Tensor._wrap(t.data[t.xp.asarray(idx)]) for t in self.dataset.tensors]
            else:
                items = [self.dataset[int(i)] for i in idx]
                yield (self.collate_fn or default_collate)(items)
