"""Hyperparameter search: grid and random search, each trial a run in its own folder, pruned
on its evaluation curve by the median rule.

    space = {"lr": LogUniform(1e-4, 1e-2), "dropout": [0.0, 0.1, 0.2]}

    def objective(trial):                  # trial.config, trial.run_dir, trial.callback()
        model, opt = build(trial.config)
        t = Trainer(model, opt, ..., run_dir=trial.run_dir, callbacks=[trial.callback()])
        t.fit()
        return t.evals[-1]["val_loss"]

    rows = random_search(objective, space, n_trials=12, out_dir="runs/search",
                         pruner=MedianPruner())
    # runs/search/trial_000/..., runs/search/results.csv, runs/search/search.png

Random search beats a grid of the same budget when only a few of the parameters matter
(Bergstra and Bengio, 2012): a 4 x 4 grid tries 4 values of the important parameter, 16
random trials try 16. The median rule (Google Vizier; Optuna's MedianPruner) stops a trial
whose best value so far is worse than the median of the finished trials at the same step.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np

from .callbacks import Callback
from .trainer import TrainingDiverged


class Uniform:
    def __init__(self, low: float, high: float):
        self.low, self.high = float(low), float(high)

    def sample(self, rng) -> float:
        return float(rng.uniform(self.low, self.high))

    def grid(self, n: int) -> list:
        return [float(v) for v in np.linspace(self.low, self.high, n)]


class LogUniform(Uniform):
    """Uniform in log space: as many draws in [1e-4, 1e-3] as in [1e-3, 1e-2]."""

    def sample(self, rng) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def grid(self, n: int) -> list:
        return [float(v) for v in np.geomspace(self.low, self.high, n)]


class IntUniform(Uniform):
    def sample(self, rng) -> int:
        return int(rng.integers(int(self.low), int(self.high) + 1))

    def grid(self, n: int) -> list:
        return sorted({int(round(v)) for v in np.linspace(self.low, self.high, n)})


def grid(space: dict, points: int = 3) -> list[dict]:
    """Every combination: lists are taken as they are, distributions at `points` values."""
    axes = [v if isinstance(v, list | tuple) else v.grid(points) for v in space.values()]
    return [dict(zip(space, combo)) for combo in itertools.product(*axes)]


def sample(space: dict, rng: np.random.Generator) -> dict:
    """One random configuration: a distribution's .sample(rng), or a uniform choice of a list."""
    # BEGIN EXERCISE ch08: random_search - v.sample(rng), or v[rng.integers(len(v))] for a list
    return {
        name: v[int(rng.integers(len(v)))] if isinstance(v, list | tuple) else v.sample(rng)
        for name, v in space.items()
    }
    # END EXERCISE


class TrialPruned(Exception):
    """Raised inside a trial when the pruner stops it."""


class MedianPruner:
    """Prune a trial at an evaluation when its best value so far is worse than the median of
    the completed trials' values at that same step. Nothing is pruned before
    `n_startup_trials` trials have completed, nor at the first `n_warmup_evals` evaluations."""

    def __init__(self, n_startup_trials: int = 2, n_warmup_evals: int = 1, mode: str = "min"):
        self.n_startup_trials, self.n_warmup_evals, self.mode = (
            n_startup_trials,
            n_warmup_evals,
            mode,
        )

    def should_prune(self, curve: dict, completed: list[dict]) -> bool:
        """curve: this trial's {step: value} so far (its last step is now); completed: the
        finished trials' curves. False while fewer than n_startup_trials have completed or
        the curve has at most n_warmup_evals points, or when no completed trial has a finite
        value at this step; else True when the best finite value of the curve so far is worse
        than the median of the completed trials' values at this step (True if it has none)."""
        # BEGIN EXERCISE ch08: median_pruning - best so far worse than the median at this step?
        if len(completed) < self.n_startup_trials or len(curve) <= self.n_warmup_evals:
            return False
        step = max(curve)
        others = [c[step] for c in completed if step in c and math.isfinite(c[step])]
        if not others:
            return False
        median = float(np.median(others))
        values = [v for v in curve.values() if math.isfinite(v)]
        if not values:
            return True
        if self.mode == "min":
            return min(values) > median
        return max(values) < median
        # END EXERCISE


class _Report(Callback):
    def __init__(self, trial, monitor):
        self.trial, self.monitor = trial, monitor

    def on_eval_end(self, trainer, metrics):
        self.trial.report(trainer.step, metrics[self.monitor])


class Trial:
    """One run of the objective: `number`, `config`, `run_dir`; report(step, value) records a
    point of its eval curve and raises TrialPruned when the pruner says so; callback() is the
    Trainer callback that reports every evaluation of `monitor`."""

    def __init__(self, number, config, run_dir, pruner=None, completed=(), monitor="val_loss"):
        self.number, self.config, self.run_dir = number, dict(config), Path(run_dir)
        self.pruner, self.completed, self.monitor = pruner, list(completed), monitor
        self.curve: dict[int, float] = {}
        self._external = None  # Optuna's trial, when run by optuna_search

    def report(self, step: int, value: float) -> None:
        self.curve[int(step)] = float(value)
        if self._external is not None:
            self._external(int(step), float(value))
        elif self.pruner is not None and self.pruner.should_prune(self.curve, self.completed):
            raise TrialPruned(f"trial {self.number} pruned at step {step} (value {value:.4f})")

    def callback(self, monitor: str | None = None) -> Callback:
        return _Report(self, monitor or self.monitor)


def run_trial(objective, config, number, out_dir, pruner=None, completed=(), monitor="val_loss"):
    """Run one trial in out_dir/trial_NNN; return its row (config, value, status, steps)."""
    trial = Trial(number, config, Path(out_dir) / f"trial_{number:03d}", pruner, completed, monitor)
    status = "complete"
    try:
        value = float(objective(trial))
    except TrialPruned:
        status = "pruned"
        value = min(trial.curve.values()) if trial.curve else float("nan")
    except TrainingDiverged:
        status, value = "diverged", float("nan")
    if pruner is not None and pruner.mode == "max" and status == "pruned":
        value = max(trial.curve.values())
    row = {"trial": number, **config, "value": value, "status": status}
    row["last_step"] = max(trial.curve) if trial.curve else 0
    return row, trial.curve


def _search(objective, configs, out_dir, pruner, monitor) -> list[dict]:
    rows, completed = [], []
    for i, config in enumerate(configs):
        row, curve = run_trial(objective, config, i, out_dir, pruner, completed, monitor)
        rows.append(row)
        if row["status"] == "complete":
            completed.append(curve)
    return rows


def random_search(
    objective, space, n_trials, out_dir, *, seed=0, pruner=None, monitor="val_loss"
) -> list[dict]:
    """n_trials configurations drawn by sample() from np.random.default_rng(seed), run one
    after the other (pruned by `pruner` against the completed ones); writes results.csv and
    search.png into out_dir and returns the rows."""
    # BEGIN EXERCISE ch08: random_search - n_trials sample()s from default_rng(seed), _search
    rng = np.random.default_rng(seed)
    configs = [sample(space, rng) for _ in range(n_trials)]
    rows = _search(objective, configs, out_dir, pruner, monitor)
    # END EXERCISE
    write_results(rows, out_dir)
    return rows


def grid_search(
    objective, space, out_dir, *, points=3, pruner=None, monitor="val_loss"
) -> list[dict]:
    """Every configuration of grid(space, points), like random_search otherwise."""
    rows = _search(objective, grid(space, points), out_dir, pruner, monitor)
    write_results(rows, out_dir)
    return rows


def write_results(rows: list[dict], out_dir) -> Path:
    """out_dir/results.csv (one row per trial) and out_dir/search.png; returns the CSV path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    path = out / "results.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    from .plot import plot_search

    plot_search(rows, out / "search.png")
    return path


def read_results(path) -> list[dict]:
    """The rows of a results.csv, numbers as floats."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append({k: _num(v) for k, v in r.items()})
    return rows


def _num(v):
    try:
        return float(v)
    except ValueError:
        return v
