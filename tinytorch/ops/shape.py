"""Shape ops: views and rearrangements, joining and splitting, indexing.

Their backwards move gradients back into place without arithmetic, except indexing with
integer arrays, whose backward *adds* into a zero array (`scatter_add`) so that an index
repeated k times receives k contributions.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, unbroadcast
from ..copies import c_copy, transposed_layout
from ..kernels import elementwise as _ew
from ..tensor import Tensor


def _sizes(args):
    """Accept f(2, 3) and f((2, 3)) alike, as PyTorch does."""
    if len(args) == 1 and isinstance(args[0], tuple | list):
        return tuple(args[0])
    return tuple(args)


def _dim(d, ndim, op):
    if not -ndim <= d < ndim:
        raise IndexError(
            f"{op}: dim {d} is out of range for {ndim} dims (expected {-ndim}..{ndim - 1})"
        )
    return d % ndim


class Reshape(Function):
    def forward(self, a, shape=()):
        self.shape = a.shape
        if transposed_layout(a):  # reshape would copy slowly
            a = c_copy(a)
        return a.reshape(shape)

    def backward(self, g):
        # BEGIN EXERCISE ch01: shape_backward - the gradient back in the input's shape
        return g.reshape(self.shape)
        # END EXERCISE


class Permute(Function):
    def forward(self, a, dims=()):
        self.dims = dims
        return a.transpose(dims)

    def backward(self, g):
        # BEGIN EXERCISE ch01: shape_backward - permute back with the inverse permutation
        return g.transpose(tuple(int(d) for d in np.argsort(self.dims)))
        # END EXERCISE


class Expand(Function):
    def forward(self, a, shape=()):
        self.shape = a.shape
        return backend.xp_of(a).broadcast_to(a, shape)

    def backward(self, g):
        return unbroadcast(g, self.shape)


def scatter_add(xp, target, index, values):
    """target[index] += values, adding repeated indices (np.add.at / cupyx.scatter_add)."""
    if xp is np:
        if (
            isinstance(index, np.ndarray)
            and index.dtype.kind in "iu"
            and values.size >= 16384  # below, building the sparse matrix costs more
            and values.dtype in (np.float32, np.float64)
            and values.shape == index.shape + target.shape[1:]
        ):
            _add_rows(target, index.reshape(-1), values)
        else:
            np.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)
    return target


def _add_rows(target, index, values):
    """target[index] += values for whole rows (index picks along dim 0; embeddings, x[ids]).

    np.add.at handles repeats but adds element by element, ~50x slower for rows of a matrix.
    Instead, with u the distinct indices: a sparse (len(u), n) matrix M with a 1 at
    (position of index[j] in u, j); M @ values sums, for each distinct row, the value rows
    pointing at it (repeats included), and those sums are added to target[u] (u has no
    repeats, so plain fancy-index addition is right)."""
    import scipy.sparse

    n, v = index.size, target.shape[0]
    if index.min() < 0:
        index = index % v
    u, where = np.unique(index, return_inverse=True)
    # column j holds one 1, in row where[j]: exactly CSC's (data, indices, indptr) layout
    m = scipy.sparse.csc_matrix(
        (np.ones(n, values.dtype), where.reshape(-1), np.arange(n + 1)), shape=(u.size, n)
    )
    rows = target.reshape(v, -1)  # a view: adding into it updates target
    rows[u] += m @ values.reshape(n, rows.shape[1])


def _is_basic(index) -> bool:
    """True when indexing makes a view (ints, slices, None, Ellipsis): no repeated elements."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, int | slice | type(None) | type(Ellipsis)) for i in items)


def _no_int_arrays(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(
        isinstance(i, int | slice | type(None) | type(Ellipsis))
        or (getattr(i, "dtype", None) is not None and i.dtype.kind == "b")
        for i in items
    )


def _raw_index(index):
    """Replace Tensors inside an index by their arrays; lists become int64/bool arrays."""
    if isinstance(index, tuple):
        return tuple(_raw_index(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


class GetItem(Function):
    def forward(self, a, index=None):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, g):
        xp = backend.xp_of(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        if _no_int_arrays(self.index):  # views and boolean masks never repeat an element
            out[self.index] = g
            return out
        return scatter_add(xp, out, self.index, g)


class Cat(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        out = _ew.cat(arrays, axis) if type(arrays[0]) is np.ndarray else None
        return backend.xp_of(arrays[0]).concatenate(arrays, axis=axis) if out is None else out

    def backward(self, g):
        # BEGIN EXERCISE ch01: shape_backward - cut g along the axis at self.bounds, one per input
        return tuple(backend.xp_of(g).split(g, self.bounds, axis=self.axis))
        # END EXERCISE


class Stack(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        return backend.xp_of(arrays[0]).stack(arrays, axis=axis)

    def backward(self, g):
        xp = backend.xp_of(g)
        return tuple(xp.squeeze(p, self.axis) for p in xp.split(g, g.shape[self.axis], self.axis))


def _infer_shape(shape, numel, old):
    """`shape` with its one -1 resolved so the element count is `numel`."""
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    bad = shape.count(-1) > 1 or any(s < -1 for s in shape)
    if not bad and -1 in shape:
        bad = known == 0 or numel % known != 0
        shape = tuple(numel // known if s == -1 else s for s in shape) if not bad else shape
    elif not bad:
        bad = known != numel
    if bad:
        raise RuntimeError(
            f"reshape: shape {shape} is invalid for an input of shape "
            f"{tuple(old)} ({numel} elements)"
        )
    return tuple(int(s) for s in shape)


def reshape(input, *shape):
    shape = _sizes(shape)
    target = _infer_shape(shape, input.data.size, input.shape)
    if target == input.shape:
        return input
    return Reshape.apply(input, shape=target)


view = reshape


def permute(input, *dims):
    dims = _sizes(dims)
    nd = input.ndim
    if sorted(d % nd if nd else d for d in dims) != list(range(nd)):
        raise RuntimeError(f"permute: dims {dims} are not a permutation of {nd} dims")
    return Permute.apply(input, dims=tuple(d % nd for d in dims))


def transpose(input, dim0: int, dim1: int):
    nd = input.ndim
    if nd < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return input
    d0, d1 = _dim(dim0, nd, "transpose"), _dim(dim1, nd, "transpose")
    if d0 == d1:
        return input
    dims = list(range(nd))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(input, dims=tuple(dims))


def expand(input, *sizes):
    sizes = _sizes(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(
            f"expand: {len(sizes)} sizes given for a {input.ndim}-dim tensor "
            f"of shape {tuple(input.shape)}"
        )
    lead = len(sizes) - input.ndim
    shape = tuple(
        input.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes)
    )
    for i in range(input.ndim):
        if input.shape[i] != 1 and input.shape[i] != shape[i + lead]:
            raise RuntimeError(
                f"expand: cannot expand shape {tuple(input.shape)} to {shape}: "
                f"dim {i} has size {input.shape[i]}, not 1"
            )
    return Expand.apply(input, shape=shape)


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, shape):
    return expand(input, tuple(shape))


def squeeze(input, dim=None):
    if dim is None:
        shape = tuple(n for n in input.shape if n != 1)
    else:
        dims = {_dim(d, input.ndim, "squeeze") for d in ((dim,) if isinstance(dim, int) else dim)}
        shape = tuple(n for i, n in enumerate(input.shape) if not (i in dims and n == 1))
    return reshape(input, shape)


def unsqueeze(input, dim: int):
    d = _dim(dim, input.ndim + 1, "unsqueeze")
    shape = list(input.shape)
    shape.insert(d, 1)
    return reshape(input, tuple(shape))


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = _dim(start_dim, input.ndim, "flatten"), _dim(end_dim, input.ndim, "flatten")
    if s > e:
        raise RuntimeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = input.shape[:s] + (-1,) + input.shape[e + 1 :]
    if input.numel() == 0:
        shape = input.shape[:s] + (int(np.prod(input.shape[s : e + 1])),) + input.shape[e + 1 :]
    return reshape(input, shape)


def _check_join(tensors, op, same_shape):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{op}: expected a non-empty list of tensors")
    ref = tensors[0]
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: element {i} is a {type(t).__name__}, not a Tensor")
        if t.dtype != ref.dtype:
            raise RuntimeError(f"{op}: tensor {i} is {t.dtype} but tensor 0 is {ref.dtype}")
        if same_shape and t.shape != ref.shape:
            raise RuntimeError(
                f"{op}: all tensors need the same shape; tensor 0 is "
                f"{tuple(ref.shape)}, tensor {i} is {tuple(t.shape)}"
            )
    return tensors


def cat(tensors, dim: int = 0):
    tensors = _check_join(tensors, "cat", False)
    axis = _dim(dim, tensors[0].ndim, "cat")
    ref = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.ndim != len(ref) or any(
            a != b for k, (a, b) in enumerate(zip(t.shape, ref)) if k != axis
        ):
            raise RuntimeError(
                f"cat: sizes must match except in dim {dim}; tensor 0 is "
                f"{tuple(ref)}, tensor {i} is {tuple(t.shape)}"
            )
    return Cat.apply(*tensors, axis=axis)


def stack(tensors, dim: int = 0):
    tensors = _check_join(tensors, "stack", True)
    axis = _dim(dim, tensors[0].ndim + 1, "stack")
    return Stack.apply(*tensors, axis=axis)


def split(input, split_size_or_sections, dim: int = 0):
    """Pieces of `split_size` along `dim` (the last may be smaller), or of the given sizes."""
    axis = _dim(dim, input.ndim, "split")
    n = input.shape[axis]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - i) for i in range(0, n, size)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(
                f"split: sections {sizes} sum to {sum(sizes)}, but dim {dim} has size {n}"
            )
    out, start = [], 0
    for s in sizes:
        index = (slice(None),) * axis + (slice(start, start + s),)
        out.append(getitem(input, index))
        start += s
    return tuple(out)


def chunk(input, chunks: int, dim: int = 0):
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = input.shape[_dim(dim, input.ndim, "chunk")]
    return split(input, max(-(-n // chunks), 1), dim)


def getitem(input, index):
    index = _raw_index(index)
    items = index if isinstance(index, tuple) else (index,)
    for i in items:
        if getattr(i, "dtype", None) is not None and i.dtype.kind not in "iub":
            raise IndexError(f"index arrays must be integer or bool, got {i.dtype}")
    if input.device == "cuda":  # index arrays follow the tensor to the GPU
        index = (
            tuple(backend.to_device(i, "cuda") if isinstance(i, np.ndarray) else i for i in items)
            if isinstance(index, tuple)
            else (backend.to_device(index, "cuda") if isinstance(index, np.ndarray) else index)
        )
    return GetItem.apply(input, index=index)
