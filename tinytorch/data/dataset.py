"""Datasets: anything with `__len__` and `__getitem__(i)`; TensorDataset, Subset, random_split.

A Dataset answers "what is example i?"; the DataLoader decides which examples go together in
a batch and in what order. Splits are Subsets: views by index, no copy.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..tensor import Tensor


class Dataset:
    """Base class: subclasses define __len__ and __getitem__ (torch.utils.data.Dataset)."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} does not define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} does not define __len__")


class TensorDataset(Dataset):
    """Example i is (t[i] for t in tensors); all tensors share their first dimension (N, ...)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        tensors = tuple(t if isinstance(t, Tensor) else Tensor(np.asarray(t)) for t in tensors)
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(
                f"TensorDataset: size mismatch between tensors, first dimensions "
                f"{[t.shape[0] for t in tensors]}"
            )
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(Tensor._wrap(t.data[index]) for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The examples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __getitem__(self, index):
        if isinstance(index, list | np.ndarray):
            return [self.dataset[self.indices[int(i)]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def as_generator(generator=None) -> np.random.Generator:
    """A NumPy Generator from a seed, a Generator, or None (tinytorch's global one, which
    `tinytorch.manual_seed` reseeds)."""
    if generator is None:
        return backend.rng("cpu")
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, int | np.integer):
        return np.random.default_rng(int(generator))
    raise TypeError(
        f"generator must be None, an int seed or a numpy.random.Generator, got "
        f"{type(generator).__name__}"
    )


def random_split(dataset, lengths, generator=None) -> list[Subset]:
    """Split into non-overlapping random Subsets of the given lengths, or fractions summing to
    1 (e.g. [0.8, 0.1, 0.1]: floors, then the remainder dealt one by one, as torch does)."""
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        if any(f < 0 or f > 1 for f in lengths):
            raise ValueError(f"random_split: fractions must be in [0, 1], got {lengths}")
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(
            f"random_split: the lengths {lengths} sum to {sum(lengths)}, but the "
            f"dataset has {n} examples"
        )
    perm = as_generator(generator).permutation(n)
    out, start = [], 0
    for k in lengths:
        out.append(Subset(dataset, perm[start : start + k]))
        start += k
    return out
