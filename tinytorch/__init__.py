"""tinytorch: a deep-learning framework built from scratch on NumPy (CPU) and CuPy (GPU).

The names follow PyTorch: `tinytorch.tensor`, `tinytorch.nn.Linear`, `tinytorch.optim.AdamW`...
The course that builds it chapter by chapter lives in chapters/; `python -m tinytorch.course`
lists and runs it.
"""

import os as _os

# OpenMP reads OMP_WAIT_POLICY once, when the first OpenMP runtime of the process starts: the
# kernels' (tinytorch/kernels/build.py) or PyTorch's, which tensorboardX imports behind the
# Trainer's back. Threads that spin after each parallel region fight NumPy's BLAS threads for
# the cores: with PyTorch loaded first and spinning, LayerNorm + matmul ran 14x slower and a
# chapter 08 step 4-5x slower. The user's own setting wins.
# Benchmarks give PyTorch its own default back (tinytorch.bench.import_torch), so they must
# know whether the setting is the user's or ours (an environment variable: child processes
# inherit both).
_os.environ.setdefault("TINYTORCH_OMP_WAIT_POLICY", str(int("OMP_WAIT_POLICY" not in _os.environ)))
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# memory: importing it keeps freed host memory for reuse (fewer page faults; see memory.py)
from . import data, memory, metrics, nn, ops, optim, profiler, train  # noqa: F401
from .autograd import enable_grad, is_grad_enabled, no_grad  # noqa: F401
from .backend import cuda_is_available, manual_seed  # noqa: F401
from .creation import (  # noqa: F401
    arange,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .dtypes import (  # noqa: F401
    bool_,
    double,
    float16,
    float32,
    float64,
    half,
    int32,
    int64,
    long,
)
from .nn.functional import gelu  # noqa: F401 - the fused kernel where it applies, as Tensor.gelu
from .ops import (  # noqa: F401
    abs,
    argmax,
    argmin,
    cat,
    chunk,
    clamp,
    clone,
    exp,
    flatten,
    floor_divide,
    log,
    log_softmax,
    masked_fill,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    permute,
    pow,
    relu,
    remainder,
    reshape,
    sigmoid,
    softmax,
    split,
    sqrt,
    squeeze,
    stack,
    std,
    sum,
    tanh,
    topk,
    transpose,
    unsqueeze,
    var,
    where,
)
from .serialization import load, save  # noqa: F401 - safetensors files (chapter 08)
from .tensor import Tensor  # noqa: F401

bool = bool_  # noqa: A001 - tinytorch.bool, as torch.bool

__version__ = "0.1.0"


class cuda:  # noqa: N801 - mirrors torch.cuda's most used function
    is_available = staticmethod(cuda_is_available)
