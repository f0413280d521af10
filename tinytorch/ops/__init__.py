"""Every differentiable op: a Function class (forward + backward) and the function users call.

elementwise  + - * / pow neg abs exp log sqrt clamp where masked_fill
activations  tanh sigmoid relu gelu
reduce       sum mean var std max min argmax argmin topk
shape        reshape/view permute transpose expand squeeze unsqueeze flatten cat stack split
             chunk getitem
linalg       matmul
nn           softmax masked_softmax log_softmax embedding dropout CrossEntropy (the op;
             users call nn.functional.cross_entropy)
misc         device/dtype moves, clone/contiguous, comparisons, all/any

Tensor's methods and operators are these functions, attached by the table at the bottom of
tinytorch/tensor.py (imported first here, so that table always finds every op module whole).
"""

from .. import tensor as _tensor  # noqa: F401 - see above
from .activations import gelu, relu, sigmoid, tanh  # noqa: F401
from .elementwise import (  # noqa: F401
    abs,
    add,
    clamp,
    div,
    exp,
    floor_divide,
    log,
    masked_fill,
    mul,
    neg,
    pow,
    remainder,
    sqrt,
    sub,
    where,
)
from .linalg import matmul  # noqa: F401
from .misc import clone, contiguous, eq, ge, gt, le, logical_not, lt, ne  # noqa: F401
from .nn import dropout, embedding, log_softmax, masked_softmax, softmax  # noqa: F401
from .reduce import (  # noqa: F401
    argmax,
    argmin,
    max,
    maximum,
    mean,
    min,
    minimum,
    std,
    sum,
    topk,
    var,
)
from .shape import (  # noqa: F401
    broadcast_to,
    cat,
    chunk,
    expand,
    expand_as,
    flatten,
    getitem,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    unsqueeze,
    view,
)
