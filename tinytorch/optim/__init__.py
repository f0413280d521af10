"""tinytorch.optim: SGD, Adam, AdamW and learning-rate schedules, with torch.optim's names.

Every optimizer updates `p.data` in place from `p.grad`, keeps PyTorch's parameter groups and
state_dict layout, and is checked step by step against torch.optim in tests/test_ch03_optim.py.
"""

from . import lr_scheduler  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .groups import body_lr_groups, decay_param_groups  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .sgd import SGD  # noqa: F401
