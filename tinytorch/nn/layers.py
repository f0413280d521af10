"""The basic layers: Linear, Embedding, LayerNorm, Dropout, activations, Identity.

Parameter names, shapes and default initializations are PyTorch's, so
`layer.load_state_dict(torch_layer.state_dict())` gives the same function.
"""

from __future__ import annotations

import math

from .. import creation, ops
from . import functional as F
from . import init
from .module import Module, Parameter


def _param(*shape, dtype=None, device="cpu"):
    return Parameter(creation.empty(*shape, dtype=dtype, device=device))


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b, for x of shape (*, in_features) -> (*, out_features).

    weight (out_features, in_features), bias (out_features,); both drawn from
    U(-1/sqrt(in), 1/sqrt(in)) as PyTorch does (its kaiming_uniform_ with a=sqrt(5))."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device="cpu", dtype=None
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param(out_features, in_features, dtype=dtype, device=device)
        self.bias = _param(out_features, dtype=dtype, device=device) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # = U(-1/sqrt(in), 1/sqrt(in))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Embedding(Module):
    """A lookup table (num_embeddings, embedding_dim) initialized N(0, 1); the row at
    padding_idx starts at zero and gets no gradient."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx=None, device="cpu", dtype=None
    ):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx {padding_idx} is out of range for "
                    f"{num_embeddings} embeddings"
                )
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.weight = _param(num_embeddings, embedding_dim, dtype=dtype, device=device)
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None):
        """An Embedding whose table is `embeddings` (V, C) (copied); frozen by default."""
        v, c = embeddings.shape
        emb = cls(
            v,
            c,
            padding_idx=padding_idx,
            dtype=embeddings.dtype,
            device=getattr(embeddings, "device", "cpu"),
        )
        emb.weight = Parameter(creation.tensor(embeddings), requires_grad=not freeze)
        return emb

    def forward(self, input):
        """input: integer ids of any shape (*) -> (*, embedding_dim)."""
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class LayerNorm(Module):
    """Normalize over the last dims (normalized_shape), then scale and shift (ones, zeros)."""

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device="cpu",
        dtype=None,
    ):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape, self.eps = tuple(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        self.weight = self.bias = None
        if elementwise_affine:
            self.weight = Parameter(
                creation.ones(*self.normalized_shape, dtype=dtype, device=device)
            )
            if bias:
                self.bias = Parameter(
                    creation.zeros(*self.normalized_shape, dtype=dtype, device=device)
                )

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )


class Dropout(Module):
    """In training, zero each element with probability p and scale the survivors by 1/(1-p)
    (so the expected value is unchanged); in eval mode, the identity. `inplace` is accepted
    for PyTorch's signature; the result is always a new tensor."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class ReLU(Module):
    def forward(self, input):
        return ops.relu(input)


class Tanh(Module):
    def forward(self, input):
        return ops.tanh(input)


class Sigmoid(Module):
    def forward(self, input):
        return ops.sigmoid(input)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, self.approximate)

    def extra_repr(self):
        return f"approximate='{self.approximate}'"


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return ops.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"
