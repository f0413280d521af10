"""tinytorch.train: the training loop (chapter 03's first version; chapter 08 grows it)."""

from .loop import History, evaluate, lm_loss, train, train_step  # noqa: F401
