"""tinytorch.bench_workers: each contender in its own process, timed in alternating turns.

The targets below run inside the worker processes (imported as tests.test_ch12_bench_workers
from the repository root)."""

from __future__ import annotations

import os
import time

import pytest

from tinytorch.bench_workers import WorkerError, interleave

pytestmark = pytest.mark.ch12

HERE = "tests.test_ch12_bench_workers"


class Probe:
    """Each step returns when it ran and in which process; untimed(i) is logged."""

    def __init__(self, tag: str, fail_at: int = -1):
        self.tag, self.fail_at, self.untimed_calls = tag, fail_at, []

    def untimed(self, i):
        self.untimed_calls.append(i)

    def step(self, i):
        if i == self.fail_at:
            raise ValueError(f"{self.tag} failed at step {i}")
        time.sleep(0.002)
        return [i, os.getpid(), time.time()]

    def finish(self):
        return {"tag": self.tag, "untimed": self.untimed_calls}


class TorchProbe:
    """A PyTorch contender: imports torch as the benchmarks do."""

    def __init__(self):
        from tinytorch.bench import import_torch

        import_torch()

    def step(self, i):
        return i


def test_each_worker_runs_every_step_in_its_own_process_in_alternating_turns():
    targets = {n: (f"{HERE}:Probe", {"tag": n}) for n in ("a", "b")}
    runs = interleave(targets, steps=7, chunk=3)
    for name, r in runs.items():
        assert [o[0] for o in r["outputs"]] == list(range(7))
        assert len(r["times"]) == 7 and all(t >= 0.002 for t in r["times"])
        assert r["result"] == {"tag": name, "untimed": list(range(7))}
        assert r["peak_rss_mb"] > 0 and r["rss_after_setup_mb"] > 0
    pids = {n: {o[1] for o in r["outputs"]} for n, r in runs.items()}
    assert len(pids["a"]) == len(pids["b"]) == 1
    assert pids["a"] != pids["b"] and os.getpid() not in pids["a"] | pids["b"]
    # turns of 3, 3, 1 steps: a then b, then b then a, then a then b
    start = {n: [r["outputs"][i][2] for i in (0, 3, 6)] for n, r in runs.items()}
    end = {n: [r["outputs"][i][2] for i in (2, 5, 6)] for n, r in runs.items()}
    assert end["a"][0] < start["b"][0] and end["b"][1] < start["a"][1]
    assert end["a"][2] <= start["b"][2]


def test_a_worker_error_names_the_worker_and_the_cause():
    targets = {"ok": (f"{HERE}:Probe", {"tag": "ok"}), "bad": (f"{HERE}:Probe", {"tag": "x"})}
    targets["bad"][1]["fail_at"] = 4
    with pytest.raises(WorkerError, match=r"worker 'bad': ValueError: x failed at step 4"):
        interleave(targets, steps=6, chunk=2)
    with pytest.raises(WorkerError, match=r"worker 'm': ModuleNotFoundError"):
        interleave({"m": ("no_such_module_here:Run", {})}, steps=1)
    with pytest.raises(ValueError, match="'module:callable'"):
        interleave({"t": ("no_colon", {})}, steps=1)
    with pytest.raises(ValueError, match="steps and chunk must be >= 1"):
        interleave({"t": (f"{HERE}:Probe", {"tag": "t"})}, steps=0)


def test_a_pytorch_worker_gets_pytorchs_own_openmp_default(monkeypatch, capfd):
    """libgomp prints its settings at load with OMP_DISPLAY_ENV=verbose: at OpenMP's default
    threads spin GOMP_SPINCOUNT = 300000 times before sleeping; passive makes it 0."""
    pytest.importorskip("torch")
    if os.environ.get("TINYTORCH_OMP_WAIT_POLICY") != "1":
        pytest.skip("the user set OMP_WAIT_POLICY: tinytorch leaves it alone")
    assert os.environ["OMP_WAIT_POLICY"] == "passive"  # what importing tinytorch set
    monkeypatch.setenv("OMP_DISPLAY_ENV", "verbose")
    r = interleave({"torch": (f"{HERE}:TorchProbe", {})}, steps=1)["torch"]
    assert r["torch_threads"] >= 1
    err = capfd.readouterr().err
    assert "GOMP_SPINCOUNT = '300000'" in err and "GOMP_SPINCOUNT = '0'" not in err
