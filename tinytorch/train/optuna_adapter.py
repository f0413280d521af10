"""The same objective under Optuna: its TPE sampler proposes the configurations, its
MedianPruner is fed by the Trainer's evaluations (the `search` extra: pip install
'tinytorch[search]', or pip install optuna).

    rows = optuna_search(objective, space, n_trials=12, out_dir="runs/optuna", seed=0)

`objective(trial)` is the one random_search and grid_search run: `trial.callback()` reports
each evaluation to Optuna, and a trial Optuna prunes ends as status "pruned" in results.csv.
"""

from __future__ import annotations

from pathlib import Path

from .search import IntUniform, LogUniform, Trial, TrialPruned, Uniform, write_results
from .trainer import TrainingDiverged


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise ImportError(
            "optuna_search needs Optuna: pip install 'tinytorch[search]' (or pip install optuna)"
        ) from e
    return optuna


def _suggest(otrial, name, v):
    if isinstance(v, list | tuple):
        return otrial.suggest_categorical(name, list(v))
    if isinstance(v, IntUniform):
        return otrial.suggest_int(name, int(v.low), int(v.high))
    if isinstance(v, LogUniform):
        return otrial.suggest_float(name, v.low, v.high, log=True)
    if isinstance(v, Uniform):
        return otrial.suggest_float(name, v.low, v.high)
    raise TypeError(f"optuna_search: cannot translate {name}={v!r} into an Optuna distribution")


def optuna_search(
    objective,
    space: dict,
    n_trials: int,
    out_dir,
    *,
    seed: int = 0,
    mode: str = "min",
    monitor: str = "val_loss",
    n_startup_trials: int = 2,
    prune: bool = True,
) -> list[dict]:
    """Run n_trials trials with Optuna's TPESampler(seed) and MedianPruner; write results.csv
    and search.png into out_dir like random_search; return the rows."""
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0)
        if prune
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        direction="minimize" if mode == "min" else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials),
        pruner=pruner,
    )
    rows = []

    def run(otrial):
        config = {name: _suggest(otrial, name, v) for name, v in space.items()}
        n = otrial.number
        trial = Trial(n, config, Path(out_dir) / f"trial_{n:03d}", monitor=monitor)

        def report(step, value):
            otrial.report(value, step)
            if otrial.should_prune():
                raise TrialPruned(f"trial {n} pruned by Optuna at step {step}")

        trial._external = report
        status = "complete"
        try:
            value = float(objective(trial))
        except TrialPruned:
            status = "pruned"
            vals = trial.curve.values()
            value = (min if mode == "min" else max)(vals) if vals else float("nan")
        except TrainingDiverged:
            status, value = "diverged", float("nan")
        last = max(trial.curve) if trial.curve else 0
        rows.append({"trial": n, **config, "value": value, "status": status, "last_step": last})
        if status == "pruned":
            raise optuna.TrialPruned()
        if status == "diverged":
            return float("nan")  # Optuna records a failed trial
        return value

    study.optimize(run, n_trials=n_trials, catch=())
    write_results(rows, out_dir)
    return rows
