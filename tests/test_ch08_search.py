"""Chapter 08: hyperparameter search (grid, random, median pruning, the Optuna adapter)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinytorch as tt
from tinytorch import nn
from tinytorch.optim import SGD
from tinytorch.train import (
    IntUniform,
    LogUniform,
    MedianPruner,
    Trainer,
    Uniform,
    grid,
    grid_search,
    random_search,
    sample,
)
from tinytorch.train.search import read_results

pytestmark = pytest.mark.ch08


def test_grid_enumerates_every_combination():
    space = {"lr": LogUniform(1e-4, 1e-2), "layers": [1, 2], "p": Uniform(0.0, 0.5)}
    configs = grid(space, points=3)
    assert len(configs) == 3 * 2 * 3
    assert sorted({c["lr"] for c in configs}) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert sorted({c["p"] for c in configs}) == pytest.approx([0.0, 0.25, 0.5])
    assert len({tuple(c.values()) for c in configs}) == 18
    assert grid({"n": IntUniform(1, 4)}, points=4) == [{"n": k} for k in (1, 2, 3, 4)]


@pytest.mark.exercise("random_search")
def test_sample_draws_each_parameter_from_its_distribution():
    space = {"lr": LogUniform(1e-4, 1e-1), "p": Uniform(0.1, 0.3), "n": IntUniform(2, 5)}
    space["act"] = ["relu", "gelu"]
    rng = np.random.default_rng(int(np.random.default_rng().integers(1 << 30)))
    draws = [sample(space, rng) for _ in range(2000)]
    lr = np.log10([d["lr"] for d in draws])
    assert lr.min() >= -4 and lr.max() <= -1
    # log-uniform: each decade gets about a third of the draws
    counts = np.histogram(lr, bins=[-4, -3, -2, -1])[0]
    assert (np.abs(counts / 2000 - 1 / 3) < 0.05).all(), counts
    p = np.array([d["p"] for d in draws])
    assert 0.1 <= p.min() and p.max() <= 0.3 and abs(p.mean() - 0.2) < 0.01
    assert {d["n"] for d in draws} == {2, 3, 4, 5}
    assert {d["act"] for d in draws} == {"relu", "gelu"}


def _quadratic(trial):
    """A cheap objective whose eval curve converges to (log10 lr + 2.5)^2 + x."""
    c = trial.config
    target = (math.log10(c["lr"]) + 2.5) ** 2 + c.get("x", 0.0)
    for step in range(1, 6):
        trial.report(step, target + 1.0 / step)
    return target + 0.2


@pytest.mark.exercise("random_search")
def test_random_search_runs_n_trials_and_writes_the_table(tmp_path):
    space = {"lr": LogUniform(1e-4, 1e-1), "x": Uniform(0, 1)}
    rows = random_search(_quadratic, space, n_trials=7, out_dir=tmp_path, seed=3)
    assert len(rows) == 7 and [r["trial"] for r in rows] == list(range(7))
    assert all(r["status"] == "complete" for r in rows)
    # the same configurations as sample() with the same seed, in order
    rng = np.random.default_rng(3)
    for r in rows:
        assert {k: r[k] for k in space} == sample(space, rng)
        assert r["value"] == pytest.approx((math.log10(r["lr"]) + 2.5) ** 2 + r["x"] + 0.2)
    table = read_results(tmp_path / "results.csv")
    assert [t["value"] for t in table] == pytest.approx([r["value"] for r in rows])
    assert (tmp_path / "search.png").stat().st_size > 1000
    again = random_search(_quadratic, space, n_trials=7, out_dir=tmp_path / "b", seed=3)
    assert [r["lr"] for r in again] == [r["lr"] for r in rows]


@pytest.mark.exercise("median_pruning")
def test_median_pruner_rule():
    pruner = MedianPruner(n_startup_trials=2, n_warmup_evals=1)
    done = [{1: 3.0, 2: 2.0, 3: 1.0}, {1: 3.2, 2: 2.4, 3: 1.5}, {1: 2.9, 2: 2.2}]
    assert not pruner.should_prune({1: 9.0}, done)  # warm-up: the first eval never prunes
    assert pruner.should_prune({1: 9.0, 2: 2.3}, done)  # median at step 2 is 2.2
    assert not pruner.should_prune({1: 9.0, 2: 2.1}, done)
    assert not pruner.should_prune({1: 2.0, 2: 2.5}, done)  # best so far (2.0) counts
    assert not pruner.should_prune({1: 9.0, 2: 9.0}, done[:1])  # too few completed trials
    assert not pruner.should_prune({1: 9, 2: 9, 3: 9, 4: 9}, done)  # nobody reached step 4
    maxi = MedianPruner(n_startup_trials=1, n_warmup_evals=0, mode="max")
    assert maxi.should_prune({1: 0.5}, [{1: 0.6}, {1: 0.8}])
    assert not maxi.should_prune({1: 0.75}, [{1: 0.6}, {1: 0.8}])


@pytest.mark.exercise("median_pruning")
def test_search_prunes_bad_trials_on_their_curve(tmp_path):
    space = {"lr": [3e-3, 3e-3, 1e-1, 1e-4]}  # the last two are far from the optimum
    rows = grid_search(_quadratic, space, tmp_path, pruner=MedianPruner(n_startup_trials=2))
    assert [r["status"] for r in rows] == ["complete", "complete", "pruned", "pruned"]
    assert rows[2]["last_step"] == 2  # stopped at the first eval after the warm-up


def _trainer_objective(trial):
    tt.manual_seed(0)
    r = np.random.default_rng(0)
    x = r.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))

    def batch_fn(i):
        ix = np.random.default_rng([1, i]).integers(0, 64, 16)
        return tt.tensor(x[ix]), tt.tensor(y[ix])

    t = Trainer(
        model,
        SGD(model.parameters(), lr=trial.config["lr"]),
        batch_fn=batch_fn,
        max_steps=12,
        val_data=[(tt.tensor(x), tt.tensor(y))],
        eval_every=3,
        run_dir=trial.run_dir,
        progress="off",
        tensorboard=False,
        callbacks=[trial.callback()],
    )
    t.fit()
    return t.evals[-1]["val_loss"]


def test_trials_are_trainer_runs_in_their_own_folders(tmp_path):
    rows = random_search(
        _trainer_objective,
        {"lr": LogUniform(1e-3, 1.0)},
        4,
        tmp_path,
        seed=1,
        pruner=MedianPruner(),
    )
    for r in rows:
        run = tmp_path / f"trial_{r['trial']:03d}"
        assert (run / "metrics.jsonl").is_file()
        assert (run / "checkpoints" / "last.safetensors").is_file()
        if r["status"] == "complete":
            assert r["last_step"] == 12
    best = min(rows, key=lambda r: r["value"])
    assert best["lr"] == max(r["lr"] for r in rows)  # more lr learns faster in 12 steps


def test_optuna_adapter_runs_tpe_and_prunes(tmp_path):
    pytest.importorskip("optuna")
    from tinytorch.train import optuna_search

    space = {"lr": LogUniform(1e-5, 1.0), "x": Uniform(0, 1), "k": [1, 2]}
    rows = optuna_search(_quadratic, space, n_trials=16, out_dir=tmp_path, seed=0)
    assert len(rows) == 16
    statuses = {r["status"] for r in rows}
    assert statuses <= {"complete", "pruned"} and "complete" in statuses
    done = [r for r in rows if r["status"] == "complete"]
    # TPE concentrates on the optimum after its random start: better than the first trials
    assert min(r["value"] for r in done) < min(r["value"] for r in rows[:2])
    assert len(read_results(tmp_path / "results.csv")) == 16


def test_missing_optuna_names_the_extra(tmp_path, monkeypatch):
    import sys

    from tinytorch.train import optuna_search

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"tinytorch\[search\]"):
        optuna_search(_quadratic, {"lr": LogUniform(1e-3, 1e-1)}, 2, tmp_path)


def test_optuna_trials_are_trainer_runs(tmp_path):
    pytest.importorskip("optuna")
    from tinytorch.train import optuna_search

    rows = optuna_search(_trainer_objective, {"lr": LogUniform(1e-3, 1.0)}, 4, tmp_path, seed=2)
    for r in rows:
        assert (tmp_path / f"trial_{r['trial']:03d}" / "metrics.jsonl").is_file()
        assert r["last_step"] == 12 or r["status"] == "pruned"
    assert read_results(tmp_path / "results.csv")[0]["lr"] == pytest.approx(rows[0]["lr"])
