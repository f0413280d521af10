"""Callbacks: code the Trainer calls at fixed points of the run, for everything it does not do
itself (Keras' and Lightning's design).

    class PrintBest(Callback):
        def on_eval_end(self, trainer, metrics):
            print(trainer.step, metrics["val_loss"])

Hooks: on_train_begin(trainer), on_step_end(trainer, logs), on_eval_end(trainer, metrics),
on_train_end(trainer). A callback stops the run by setting `trainer.should_stop = True` (and
`trainer.stop_reason`). A callback with state (EarlyStopping's counter) returns it from
state_dict(), so it is saved in checkpoints and a resumed run stops at the same step.
"""

from __future__ import annotations

import math


class Callback:
    def on_train_begin(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, logs: dict) -> None:
        pass

    def on_eval_end(self, trainer, metrics: dict) -> None:
        pass

    def on_train_end(self, trainer) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def is_better(value: float, best: float | None, mode: str = "min", min_delta: float = 0.0):
    """Is `value` an improvement on `best` by more than min_delta? (None: anything is.)"""
    if best is None:
        return math.isfinite(value)
    if mode == "min":
        return value < best - min_delta
    if mode == "max":
        return value > best + min_delta
    raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


class EarlyStopping(Callback):
    """Stop when `monitor` (a key of the eval metrics, e.g. "val_loss") has not improved by
    more than min_delta for `patience` evaluations in a row (mode "min": lower is better).

    State: best (the best value so far, None before the first eval), best_step, wait (evals
    since the last improvement)."""

    def __init__(self, monitor="val_loss", patience: int = 3, min_delta: float = 0.0, mode="min"):
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.best, self.best_step, self.wait = None, 0, 0

    def update(self, value: float, step: int = 0) -> bool:
        """Take one evaluation's value; return True when training should stop.

        An improvement (is_better(value, best, mode, min_delta)) sets best, best_step and
        wait = 0; anything else adds 1 to wait, and wait >= patience means stop."""
        # BEGIN EXERCISE ch08: early_stopping - track best/best_step/wait, stop at patience
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.best_step, self.wait = float(value), int(step), 0
            return False
        self.wait += 1
        return self.wait >= self.patience
        # END EXERCISE

    def on_eval_end(self, trainer, metrics: dict) -> None:
        if self.monitor not in metrics:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, but the evaluation returned only "
                f"{sorted(metrics)}"
            )
        if self.update(metrics[self.monitor], trainer.step):
            trainer.should_stop = True
            trainer.stop_reason = (
                f"early stopping: {self.monitor} did not improve by more than {self.min_delta} "
                f"in {self.patience} evaluations (best {self.best:.4f} at step {self.best_step})"
            )

    def state_dict(self) -> dict:
        out = {
            "best_step": self.best_step,
            "wait": self.wait,
            "has_best": int(self.best is not None),
        }
        out["best"] = float(self.best) if self.best is not None else 0.0
        return out

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"]) if int(state["has_best"]) else None
        self.best_step, self.wait = int(state["best_step"]), int(state["wait"])


class LambdaCallback(Callback):
    """A callback from plain functions: LambdaCallback(on_eval_end=lambda t, m: ...)."""

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise ValueError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)
