"""tinytorch.nn: modules with PyTorch's names, parameter names and initializations."""

from . import functional, init  # noqa: F401
from .attention import *  # noqa: F401,F403 - MultiheadAttention, positional encodings (ch06)
from .batchnorm import BatchNorm1d, BatchNorm2d  # noqa: F401 - ch08
from .containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from .layers import (  # noqa: F401
    GELU,
    Dropout,
    Embedding,
    Identity,
    LayerNorm,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa: F401
from .module import Module, Parameter  # noqa: F401
from .rnn import *  # noqa: F401,F403 - the stacks RNN, LSTM, GRU (ch04, ch05)
from .rnn_cells import *  # noqa: F401,F403 - RNNCell, LSTMCell, GRUCell, rnn_cell, ... (ch04, ch05)
from .transformer import *  # noqa: F401,F403 - Transformer layers and stacks (ch06, ch07)
from .utils import clip_grad_norm_, clip_grad_value_  # noqa: F401
