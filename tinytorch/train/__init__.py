"""tinytorch.train: the training loop (chapter 03's first version) and chapter 08's Trainer
with checkpoints, callbacks, logging and hyperparameter search."""

from .accumulate import MicroBatches, StepLoss, accumulate_grad  # noqa: F401
from .callbacks import Callback, EarlyStopping, LambdaCallback  # noqa: F401
from .checkpoint import CheckpointManager, checkpoint_state, restore_state  # noqa: F401
from .logging import Progress, RunLogger, read_jsonl  # noqa: F401
from .loop import History, evaluate, gpt_loss, lm_loss, train, train_step  # noqa: F401
from .plot import plot_run, plot_search  # noqa: F401
from .rng import get_rng_state, set_rng_state  # noqa: F401
from .search import (  # noqa: F401
    IntUniform,
    LogUniform,
    MedianPruner,
    Trial,
    TrialPruned,
    Uniform,
    grid,
    grid_search,
    random_search,
    sample,
)
from .stream import BatchStream  # noqa: F401
from .tbptt import TBPTTLoss, detach_state  # noqa: F401
from .trainer import Trainer, TrainingDiverged  # noqa: F401


def optuna_search(*args, **kwargs):
    """See tinytorch.train.optuna_adapter (imported on use: Optuna is an optional extra)."""
    from .optuna_adapter import optuna_search as run

    return run(*args, **kwargs)
