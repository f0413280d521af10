"""Checkpoints: everything a run needs to continue as if it had never stopped, in one file.

One checkpoint is one safetensors file written by `tinytorch.save` (tensors by name, the rest
as JSON in its metadata; no pickle, so loading never runs code), holding

    model      the model's state_dict (parameters and buffers)
    optimizer  its state_dict: per-parameter state (Adam's exp_avg, exp_avg_sq, step) + groups
    scheduler  its state_dict (last_epoch, base_lrs, ...), when there is one
    step       optimizer steps done
    rng        every random generator's state (rng.get_rng_state: dropout's, NumPy's, ...)
    data       where the data stream is (stream.BatchStream.state_dict)
    trainer    the rest: best metric so far, callbacks' state, the history

Under DIR/checkpoints/: `last.safetensors` (rewritten at each save), `best.safetensors` (the
best by the monitored metric) and `step_00001000.safetensors`, ... of which only the newest
`keep` are kept. tinytorch.save writes atomically (temp file, fsync, rename), so a crash, even
kill -9, mid-write leaves the previous `last` intact. The step files and `best` are hard links
to the `last` they were saved as (no second write; a later `last` is a new file, so the links
keep the old content), made atomic by linking to a temp name and renaming.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from .rng import get_rng_state, set_rng_state

_STEP_FILE = re.compile(r"^step_(\d+)\.safetensors$")


def _io():
    from .. import serialization

    return serialization


def checkpoint_state(model, optimizer, scheduler, step: int, data: dict, trainer: dict) -> dict:
    """The checkpoint's nested dict (see the module docstring); `scheduler` may be None."""
    # BEGIN EXERCISE ch08: checkpoint_round_trip - the dict of the module docstring
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": int(step),
        "rng": get_rng_state(),
        "data": data,
        "trainer": trainer,
    }
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    return state
    # END EXERCISE


def restore_state(state: dict, model, optimizer, scheduler) -> int:
    """Load a checkpoint's model, optimizer, scheduler and random generators; return its step.
    (The data position and the trainer's fields are the caller's: BatchStream restores the
    data first, since skipping batches may draw random numbers, then this restores the RNG.)"""
    # BEGIN EXERCISE ch08: checkpoint_round_trip - load each part back, return the step
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        if "scheduler" not in state:
            raise KeyError("the checkpoint has no scheduler state, but this run has a scheduler")
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"])
    # END EXERCISE


def _link(src: Path, dst: Path) -> None:
    """dst becomes the content of src, atomically (hard link, or a copy where links fail)."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


class CheckpointManager:
    """Saves and finds the checkpoints of one run under `directory` (DIR/checkpoints)."""

    def __init__(self, directory, keep: int = 3):
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self.dir, self.keep = Path(directory), keep

    @property
    def last(self) -> Path:
        return self.dir / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.dir / "best.safetensors"

    def step_files(self) -> list[Path]:
        """The kept step_*.safetensors files, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_FILE.match(p.name))
        ]
        return [p for _, p in sorted(found)]

    def save(self, state: dict, step: int, is_best: bool = False) -> Path:
        """Write `state` as last.safetensors (atomically), link it as step_N (and as best),
        prune the step files beyond the newest `keep`. Returns the path of `last`."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _io().save(state, self.last)
        if self.keep:
            _link(self.last, self.dir / f"step_{int(step):08d}.safetensors")
        if is_best:
            _link(self.last, self.best)
        for old in self.step_files()[: max(0, len(self.step_files()) - self.keep)]:
            old.unlink(missing_ok=True)
        return self.last

    def load(self, path=None) -> dict:
        """Load `path` (default last.safetensors) with tinytorch.load."""
        path = Path(path) if path is not None else self.last
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
        return _io().load(path)
