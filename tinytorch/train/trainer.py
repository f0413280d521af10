"""The Trainer: chapter 03's loop grown into what a real run needs.

    trainer = Trainer(model, optimizer, batch_fn=get_batch, max_steps=2000,
                      accumulation_steps=4, clip_grad_norm=1.0, scheduler=sched,
                      val_data=val_batches, eval_every=250, run_dir="runs/gpt",
                      callbacks=[EarlyStopping(patience=3)])
    history = trainer.fit()                 # or trainer.fit(resume=True)

Each step is `train_step` (loop.py) on k micro-batches (gradient accumulation, accumulate.py),
then the scheduler. Every `eval_every` steps the model is evaluated (val_loss and any metric
functions); the callbacks see every step and every evaluation; checkpoints (checkpoint.py) go
to run_dir/checkpoints every `checkpoint_every` steps, at the end, and whenever the monitored
metric improves (best.safetensors). A run resumed from its last checkpoint ends with the very
parameters, bit for bit, of the run that never stopped: the checkpoint holds the model, the
optimizer, the scheduler, every random generator and the data position.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..autograd import no_grad
from .accumulate import MicroBatches
from .callbacks import Callback, is_better
from .checkpoint import CheckpointManager, checkpoint_state, restore_state
from .logging import Progress, RunLogger
from .loop import History, evaluate, lm_loss, train_step
from .stream import BatchStream


class TrainingDiverged(FloatingPointError):
    """The loss or the gradients became NaN/inf; the parameters were left as they were."""


class Trainer:
    """Train `model` with `optimizer` for max_steps optimizer steps (or max_epochs passes over
    `train_data`).

    Data: `train_data` (a DataLoader or re-iterable of batches) or `batch_fn(i)` returning
    micro-batch i (i = 0, 1, ...). One optimizer step uses `accumulation_steps` micro-batches.
    loss_fn(model, batch) -> scalar loss (default: cross-entropy of model(x) against y).
    Evaluation: every `eval_every` steps and at the end, `val_loss` = evaluate(model, val_data,
    loss_fn, eval_batches) and metrics[name](model, val_data) for each metric function.
    monitor/mode: the eval metric that picks best.safetensors ("val_loss", lower is better).
    run_dir: where checkpoints/ and the logs go (None: no files at all).
    progress: "auto", "bar", "lines" or "off" (False). tensorboard: None (if installed), True,
    False. log_every: write the step scalars every that many steps.
    """

    def __init__(
        self,
        model,
        optimizer,
        train_data=None,
        *,
        batch_fn=None,
        loss_fn=lm_loss,
        max_steps: int | None = None,
        max_epochs: int | None = None,
        accumulation_steps: int = 1,
        clip_grad_norm: float | None = None,
        scheduler=None,
        val_data=None,
        eval_every: int = 0,
        eval_batches: int | None = None,
        metrics: dict | None = None,
        callbacks=(),
        run_dir=None,
        checkpoint_every: int = 0,
        keep_checkpoints: int = 3,
        monitor: str = "val_loss",
        mode: str = "min",
        progress="auto",
        tensorboard=None,
        log_every: int = 1,
    ):
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.stream = BatchStream(train_data, batch_fn)
        self.loss_fn, self.k, self.clip = loss_fn, accumulation_steps, clip_grad_norm
        if max_steps is None:
            if max_epochs is None:
                raise ValueError("Trainer: give max_steps or max_epochs")
            if batch_fn is not None or not hasattr(train_data, "__len__"):
                raise ValueError("Trainer: max_epochs needs train_data with a length")
            max_steps = max(1, max_epochs * len(train_data) // accumulation_steps)
        if max_steps < 1:
            raise ValueError(f"Trainer: max_steps must be positive, got {max_steps}")
        self.max_steps = max_steps
        self.val_data, self.eval_every, self.eval_batches = val_data, eval_every, eval_batches
        self.metrics = dict(metrics or {})
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoints = (
            CheckpointManager(self.run_dir / "checkpoints", keep_checkpoints)
            if self.run_dir is not None
            else None
        )
        self.checkpoint_every, self.monitor, self.mode = checkpoint_every, monitor, mode
        self.progress_mode, self.tensorboard, self.log_every = progress, tensorboard, log_every
        self.step = 0
        self.best, self.best_step = None, 0
        self.should_stop, self.stop_reason = False, ""
        self.history = History()
        self.evals: list[dict] = []  # {"step": s, "val_loss": ..., metric: ...} per evaluation
        self.last_checkpoint_step = None
        self.progress_file = None  # where the bar / lines go (None: stdout)

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict:
        """val_loss and every metric on val_data, in eval mode and without a graph."""
        out = {"val_loss": evaluate(self.model, self.val_data, self.loss_fn, self.eval_batches)}
        was_training = self.model.training
        self.model.eval()
        try:
            with no_grad():
                for name, fn in self.metrics.items():
                    out[name] = float(fn(self.model, self.val_data))
        finally:
            self.model.train(was_training)
        return out

    # ---- checkpoints ---------------------------------------------------------------------
    def _callback_key(self, i, cb) -> str:
        return f"{i}_{type(cb).__name__}"

    def state_dict(self) -> dict:
        """The whole run's state, as one checkpoint holds it."""
        trainer = {
            "best": self.best if self.best is not None else 0.0,
            "has_best": int(self.best is not None),
            "best_step": self.best_step,
            "history": self.history.to_dict(),
            "evals": self.evals,
            # a run that a callback ended (early stopping) stays ended when resumed; a run
            # merely interrupted (should_stop without a reason) continues
            "stop_reason": self.stop_reason,
            "callbacks": {
                self._callback_key(i, cb): cb.state_dict() for i, cb in enumerate(self.callbacks)
            },
        }
        return checkpoint_state(
            self.model, self.optimizer, self.scheduler, self.step, self.stream.state_dict(), trainer
        )

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["data"])  # before the RNG: skipping may draw from it
        self.step = restore_state(state, self.model, self.optimizer, self.scheduler)
        t = state["trainer"]
        self.best = float(t["best"]) if int(t["has_best"]) else None
        self.best_step = int(t["best_step"])
        h = t["history"]
        self.history = History(
            steps=[int(s) for s in h["steps"]],
            train_loss=[float(v) for v in h["train_loss"]],
            lr=[float(v) for v in h["lr"]],
            val_steps=[int(s) for s in h["val_steps"]],
            val_loss=[float(v) for v in h["val_loss"]],
            seconds=float(h["seconds"]),
        )
        self.evals = [dict(e) for e in t["evals"]]
        self.stop_reason = str(t.get("stop_reason", ""))
        self.should_stop = bool(self.stop_reason)
        saved = t["callbacks"]
        for i, cb in enumerate(self.callbacks):
            key = self._callback_key(i, cb)
            if key in saved:
                cb.load_state_dict(saved[key])

    def save_checkpoint(self, is_best: bool = False) -> Path | None:
        if self.checkpoints is None:
            return None
        path = self.checkpoints.save(self.state_dict(), self.step, is_best)
        self.last_checkpoint_step = self.step
        return path

    def load_checkpoint(self, path=None) -> None:
        if self.checkpoints is None and path is None:
            raise ValueError("Trainer: resuming needs run_dir (or a checkpoint path)")
        manager = self.checkpoints or CheckpointManager(Path(path).parent)
        self.load_state_dict(manager.load(path))
        self.last_checkpoint_step = self.step

    # ---- the loop ------------------------------------------------------------------------
    def fit(self, resume=False) -> History:
        """Train to max_steps (or until a callback stops the run); returns the History.
        resume: True continues from run_dir/checkpoints/last.safetensors, a path from that
        file. Raises TrainingDiverged when the loss becomes NaN/inf."""
        if resume:
            self.load_checkpoint(None if resume is True else resume)
        self.model.train()
        logger = RunLogger(self.run_dir, self.tensorboard, self.step) if self.run_dir else None
        bar = Progress(self.max_steps, self.step, self.progress_mode, file=self.progress_file)
        if resume:
            where = self.checkpoints.last if resume is True else resume
            bar.write(f"resumed from step {self.step} ({where})")
        for cb in self.callbacks:
            cb.on_train_begin(self)
        start = time.perf_counter() - self.history.seconds
        try:
            while self.step < self.max_steps and not self.should_stop:
                self._one_step(logger, bar)
            if self.last_checkpoint_step != self.step:
                self.save_checkpoint()
        finally:
            self.history.seconds = time.perf_counter() - start
            bar.close()
            if logger is not None:
                logger.close()
        if self.stop_reason:
            bar.write(self.stop_reason)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _one_step(self, logger, bar) -> None:
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        micro = MicroBatches(self.stream.next() for _ in range(self.k))
        loss = train_step(self.model, self.optimizer, micro, self.loss_fn, self.clip)
        if not loss.stepped:
            self._diverged(loss, lr, logger)
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        ms = 1e3 * (time.perf_counter() - t0)
        h = self.history
        h.steps.append(self.step)
        h.train_loss.append(float(loss))
        h.lr.append(lr)
        logs = {
            "train/loss": float(loss),
            "train/lr": lr,
            "train/grad_norm": loss.grad_norm,
            "train/step_ms": ms,
        }
        if logger is not None and (self.step % self.log_every == 0 or self.step == 1):
            logger.log(self.step, logs)
        for cb in self.callbacks:
            cb.on_step_end(self, logs)
        is_best = False
        last = self.step == self.max_steps
        if self.val_data is not None and (
            last or (self.eval_every and self.step % self.eval_every == 0)
        ):
            metrics = self.evaluate()
            self.evals.append({"step": self.step, **metrics})
            h.val_steps.append(self.step)
            h.val_loss.append(metrics["val_loss"])
            if logger is not None:
                logger.log(self.step, {f"val/{k}": v for k, v in metrics.items()})
                logger.flush()
            bar.eval(metrics)
            for cb in self.callbacks:
                cb.on_eval_end(self, metrics)
            if self.monitor in metrics and is_better(metrics[self.monitor], self.best, self.mode):
                self.best, self.best_step, is_best = float(metrics[self.monitor]), self.step, True
        due = self.checkpoint_every and self.step % self.checkpoint_every == 0
        if due or is_best or last or self.should_stop:
            self.save_checkpoint(is_best)
        bar.update(self.step, float(loss), lr)

    def _diverged(self, loss, lr, logger) -> None:
        where = (
            f"the last good checkpoint is {self.checkpoints.last} (step "
            f"{self.last_checkpoint_step})"
            if self.checkpoints is not None and self.last_checkpoint_step is not None
            else "no checkpoint was saved"
        )
        what = "loss" if not math.isfinite(float(loss)) else "gradient norm"
        value = float(loss) if what == "loss" else loss.grad_norm
        self.stop_reason = (
            f"Trainer: the {what} became {value} at step {self.step + 1} (lr {lr:g}); the "
            f"parameters were not updated and training stopped; {where}. Lower the learning "
            "rate, clip the gradients (clip_grad_norm) or check the data."
        )
        if logger is not None:
            logger.log(self.step + 1, {"train/loss": float(loss)})
        raise TrainingDiverged(self.stop_reason)
