"""Each contender in its own process, timed in alternating rounds (chapter 12, section 2).

Two things make a same-process comparison of tinytorch with PyTorch unfair on the CPU:

- **One OpenMP runtime per process.** PyTorch's libgomp and tinytorch's kernels share one runtime
  (same soname, libgomp.so.1), and it reads its settings once, when it loads. tinytorch sets
  OMP_WAIT_POLICY=passive (threads sleep between parallel regions); PyTorch runs at OpenMP's
  default (threads spin a while). Whichever setting the process has slows one of the two.
- **A machine's speed drifts.** On a shared or virtual machine the same step took 40 ms in one
  round and 59 ms in another a few seconds later (benchmarks/results/profiler_overhead_cpu_cpu.md).
  Timing all of tinytorch, then all of PyTorch, puts that drift into the ratio.

So each contender runs in its own worker process, with its own library defaults, and the parent
asks them for `chunk` steps in turn (the order alternating each round) until each has run
`steps`: both see the same minutes of the machine, and the per-step times are comparable.

    results = interleave(
        {"tinytorch": ("benchmarks.gpt_cpu:Run", {"framework": "tinytorch", "workdir": w}),
         "torch": ("benchmarks.gpt_cpu:Run", {"framework": "torch", "workdir": w})},
        steps=2000, chunk=50)
    results["torch"]["times"]          # seconds of each step, in order

A target is "module:callable": the worker imports the module and calls it with the keyword
arguments (JSON values). What it returns has `step(i)` (timed; its return value, when JSON can
hold it, is kept in "outputs"), and may have `untimed(i)` (called before step i, not timed:
evaluation, batch preparation) and `finish()` (a JSON-able dict, called once at the end). A
PyTorch contender imports torch through tinytorch.bench.import_torch, before any tinytorch kernel
runs in its process, so that PyTorch gets its own OpenMP defaults.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .bench import ROOT

FRAMEWORKS = ("tinytorch", "torch")


def write_job(workdir, init: dict, job) -> None:
    """What every worker starts from, into `workdir`: the initial weights (init.npz, one array
    per state_dict key) and the rest of the job (job.pkl: data, settings, batch order)."""
    np.savez(Path(workdir) / "init.npz", **init)
    (Path(workdir) / "job.pkl").write_bytes(pickle.dumps(job))


def read_job(workdir) -> tuple[dict, object]:
    """(init, job) as write_job left them: in a worker, before it builds its model."""
    work = Path(workdir)
    return dict(np.load(work / "init.npz")), pickle.loads((work / "job.pkl").read_bytes())


def per_framework(target: str, workdir, names=FRAMEWORKS) -> dict:
    """interleave()'s targets: `target` once per framework, each told its name and `workdir`."""
    return {n: (target, {"framework": n, "workdir": str(workdir)}) for n in names}


def timing(chunk: int) -> str:
    """How interleave() timed a comparison, for a result file's "timing" field."""
    return f"each framework in its own process, turns of {chunk} steps"


class WorkerError(RuntimeError):
    """A worker process failed; its traceback is in the output above the error."""


class Worker:
    """The parent's handle on one worker process (see the module docstring)."""

    def __init__(self, name: str, target: str, kwargs: dict | None = None, cpus=None, env=None):
        if ":" not in target:
            raise ValueError(f"worker {name!r}: target {target!r} should be 'module:callable'")
        self.name = name
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, set(cpus)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinytorch.bench_workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # the protocol; the worker's own prints go to stderr
            text=True,
            cwd=ROOT,
            preexec_fn=pin,
            env=None if env is None else {**os.environ, **env},
        )
        self.setup = self._ask({"target": target, "kwargs": kwargs or {}})

    def _ask(self, message: dict) -> dict:
        self.send(message)
        return self.receive()

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.receive()  # raises with the exit code

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise WorkerError(
                f"benchmark worker {self.name!r} exited with code {code} "
                "(its error is printed above)"
            )
        reply = json.loads(line)
        if "error" in reply:
            self.close()
            raise WorkerError(f"benchmark worker {self.name!r}: {reply['error']}")
        return reply

    def run(self, first: int, count: int) -> dict:
        """Steps first .. first + count - 1; returns {"times": [...], "outputs": [...]}."""
        return self._ask({"run": [first, count]})

    def finish(self) -> dict:
        reply = self._ask({"finish": True})
        self.close()
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def interleave(
    targets: dict,
    steps: int,
    chunk: int = 50,
    cpus: dict | None = None,
    concurrent=False,
    env: dict | None = None,
) -> dict:
    """Run every contender `steps` steps, `chunk` at a time in turn; returns, per name,
    {"times", "outputs", "result" (finish()'s dict), "peak_rss_mb", "rss_after_setup_mb",
    "setup_s", "torch_threads" (when the worker imported torch)}.

    `targets`: name -> ("module:callable", kwargs). `cpus`: name -> CPU ids to pin a worker to;
    with `concurrent`, the workers run their chunks at the same time (a machine with a core set
    for each), otherwise strictly one after the other. `env`: name -> environment variables
    that worker starts with (on top of this process's), e.g. thread counts to compare."""
    if steps < 1 or chunk < 1:
        raise ValueError(f"interleave: steps and chunk must be >= 1, got {steps} and {chunk}")
    workers = {}
    try:
        for name, (target, kwargs) in targets.items():
            workers[name] = Worker(
                name, target, kwargs, (cpus or {}).get(name), (env or {}).get(name)
            )
        runs = {name: {"times": [], "outputs": []} for name in workers}
        order = list(workers)
        for r, first in enumerate(range(0, steps, chunk)):
            count = min(chunk, steps - first)
            turn = order if r % 2 == 0 else order[::-1]  # who goes first alternates
            if concurrent:
                for name in turn:
                    workers[name].send({"run": [first, count]})
                replies = {name: workers[name].receive() for name in turn}
            else:
                replies = {name: workers[name].run(first, count) for name in turn}
            for name, reply in replies.items():
                runs[name]["times"] += reply["times"]
                runs[name]["outputs"] += reply["outputs"]
        for name, w in workers.items():
            end = w.finish()
            runs[name].update(
                result=end["result"],
                peak_rss_mb=end["peak_rss_mb"],
                rss_after_setup_mb=w.setup["rss_mb"],
                rss_before_setup_mb=w.setup["rss_before_mb"],
                setup_s=w.setup["seconds"],
                **({"torch_threads": end["torch_threads"]} if "torch_threads" in end else {}),
            )
        return runs
    finally:
        for w in workers.values():
            w.close()


# ---- the worker's side ------------------------------------------------------------------------
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _jsonable(x):
    try:
        json.dumps(x)
        return x
    except (TypeError, ValueError):
        return None


def serve(inp=sys.stdin, out=None) -> None:
    """The worker's loop: one JSON request per line on stdin, one JSON reply per line."""
    if out is None:  # replies on the real stdout; anything the benchmark prints goes to stderr
        out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    obj = None
    for line in inp:
        req = json.loads(line)
        try:
            if "target" in req:
                module, _, attr = req["target"].partition(":")
                before, t0 = _rss_mb(), time.perf_counter()
                obj = getattr(importlib.import_module(module), attr)(**req["kwargs"])
                reply = dict(
                    seconds=time.perf_counter() - t0, rss_mb=_rss_mb(), rss_before_mb=before
                )
            elif "run" in req:
                first, count = req["run"]
                times, outputs = [], []
                untimed = getattr(obj, "untimed", None)
                for i in range(first, first + count):
                    if untimed is not None:
                        untimed(i)
                    t0 = time.perf_counter()
                    value = obj.step(i)
                    times.append(time.perf_counter() - t0)
                    outputs.append(_jsonable(value))
                reply = dict(times=times, outputs=outputs)
            else:  # finish
                result = obj.finish() if hasattr(obj, "finish") else {}
                reply = dict(result=result, peak_rss_mb=_rss_mb())
                if "torch" in sys.modules:
                    reply["torch_threads"] = sys.modules["torch"].get_num_threads()
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
            import traceback

            traceback.print_exc()
            reply = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if "error" in reply or "finish" in req:
            return


if __name__ == "__main__":
    serve()
