"""The whole comparison in one command: every benchmark that fits this machine, one report.

    python -m benchmarks.suite                 # the CPU suite (~10-15 min on 2 cores), + GPU
    python -m benchmarks.suite --quick         # tiny sizes: checks that it all runs (CI)
    python -m benchmarks.suite --record        # the report into benchmarks/results/
    python -m benchmarks.suite --only ops_cpu gpt_cpu --out /tmp/r

Each benchmark runs in its own process (`python -m benchmarks.NAME` with the flags below),
its result files redirected into a folder of the suite's (`raw/` under --out; with --record,
benchmarks/results/suite_<device>/, so the long standalone runs that README quotes are never
overwritten by the suite's shorter ones). CPU benchmarks always run; the GPU ones when CuPy sees
a GPU. Then the suite profiles chapter 07's GPT training step with tinytorch.profiler, and
benchmarks/report.py turns it all into report_<device>.md (+ .json and PNGs: time ratio per
benchmark, attention time against T, the GPT step's top ops by self time), with the device,
library versions and thread counts. Chapter 12's main.py runs this module.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (flags of the default run, flags of --quick, needs a GPU). Default sizes are chosen
# so the CPU part stays within ~10-15 minutes on 2 cores; the standalone runs are longer.
BENCHMARKS = {
    "ops_cpu": (["--sizes", "64", "1024"], ["--sizes", "32"], False),
    "attention_cpu": ([], ["--quick"], False),
    "kernels_cpu": (["--quick"], ["--quick", "--repeat", "2"], False),
    "gelu_cpu": ([], ["--quick"], False),
    "gpt_cpu": (
        ["--iters", "300", "--eval-every", "150"],
        ["--iters", "8", "--eval-every", "8"],
        False,
    ),
    "rnn_cpu": (["--steps", "100", "--eval-batches", "20"], ["--quick"], False),
    "gpt_gpu": (["--steps", "30"], ["--steps", "5"], True),
    "kernels_gpu": (
        ["--quick", "--no-attention"],
        ["--quick", "--repeat", "3", "--no-attention"],
        True,
    ),
    "attention_gpu": (["--quick"], ["--quick"], True),
}
# --quick (CI: about a minute on 2 cores) leaves out the ones whose own --quick takes a minute
# or more (attention_cpu also times the naive kernel versions); the default run has them all
QUICK_SKIP = {"rnn_cpu", "attention_cpu", "kernels_cpu"}


def gpu_present() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: the CPU suite only
        return False


def run_one(name: str, flags: list[str], raw: Path, log) -> tuple[list[dict], float]:
    """Run benchmarks.NAME in a child process, its result files going into `raw`; returns the
    result files it wrote (parsed JSON) and its wall time in seconds."""
    start = time.time()
    before = snapshot(raw)  # what the earlier benchmarks wrote
    cmd = [sys.executable, "-m", "benchmarks.suite", "--one", name, "--raw", str(raw), "--"]
    proc = subprocess.run(cmd + flags, cwd=ROOT, capture_output=True, text=True)
    log.write(f"$ python -m benchmarks.{name} {' '.join(flags)}\n{proc.stdout}\n{proc.stderr}\n")
    seconds = time.time() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmarks.{name} failed (exit {proc.returncode}): " + "\n".join(tail))
    return [json.loads(p.read_text()) for p in written_since(raw, before)], seconds


def snapshot(raw: Path) -> dict:
    """The result files in `raw` and when each was last written."""
    return {p: p.stat().st_mtime_ns for p in raw.glob("*.json")}


def written_since(raw: Path, before: dict) -> list[Path]:
    """The result files created or rewritten since `before` (snapshot): not a time window, in
    which the previous benchmark's files, written a moment before, were once counted twice."""
    return sorted(p for p, t in snapshot(raw).items() if before.get(p) != t)


def _one(name: str, raw: Path, flags: list[str]) -> None:
    """In the child: point tinytorch.bench's result folder at `raw`, then run the benchmark
    as `python -m benchmarks.NAME FLAGS` would."""
    import tinytorch.bench as bench

    raw.mkdir(parents=True, exist_ok=True)
    bench.RESULTS = raw  # write_results and the benchmarks' plots read it when they run
    sys.argv = [str(HERE / f"{name}.py"), *flags]
    runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)


def profile_gpt_step(steps: int, out: Path, tag: str) -> dict:
    """Chapter 07's GPT step (its recipe's sizes) under tinytorch.profiler: the top ops by
    self time, the step's time with and without the profile, and a Chrome trace."""
    import numpy as np

    import tinytorch as tt
    from tinytorch.bench import time_cpu
    from tinytorch.models import GPT, GPTConfig
    from tinytorch.optim import AdamW
    from tinytorch.profiler import profile, record_function
    from tinytorch.train import train_step

    tt.manual_seed(0)
    cfg = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    model = GPT(GPTConfig(**cfg, bias=False))
    opt = AdamW(model.optimizer_groups(0.1), lr=1e-3, betas=(0.9, 0.99))
    rng = np.random.default_rng(0)

    def step():
        with record_function("train_step"):
            batch = tuple(tt.tensor(rng.integers(0, 65, (12, 64))) for _ in range(2))
            train_step(model, opt, batch, loss_fn=lambda m, b: m(*b)[1], clip_grad_norm=1.0)

    plain = time_cpu(step, warmup=3, repeat=steps)
    with profile(record_shapes=True, profile_memory=True) as prof:
        profiled = time_cpu(step, warmup=0, repeat=steps)
    trace = prof.export_chrome_trace(out / f"report_{tag}_gpt_step_trace.json")
    averages = prof.key_averages()
    for k in averages:  # the range's self time: what no op recorded
        if k.kind == "user":
            k.key = "outside ops (AdamW, clipping, Python)"
    top = sorted(averages, key=lambda k: k.self_cpu_time_total, reverse=True)
    per_step = 1e3 * steps  # microseconds summed over `steps` steps -> ms per step
    rows = [
        dict(
            name=k.key,
            kind=k.kind,
            calls_per_step=k.count / steps,
            self_ms_per_step=k.self_cpu_time_total / per_step,
            total_ms_per_step=k.cpu_time_total / per_step,
            MB_per_step=k.self_cpu_memory_usage / steps / 2**20,
        )
        for k in top
    ]
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return dict(
        steps=steps,
        step_ms=plain * 1e3,
        step_ms_profiled=profiled * 1e3,
        events_per_step=len(prof.events()) / steps,
        rows=rows,
        table=table,
        trace=trace.name,
    )


def machine_threads() -> dict:
    """Thread counts both libraries run with (the ratios depend on them)."""
    info = {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        info[var] = os.environ.get(var, "unset")
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["numpy_blas"] = ", ".join(
            f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info()
        )
    except ImportError:
        pass
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, for CI (about a minute)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "suite", help="report folder")
    p.add_argument("--record", action="store_true", help="the report into benchmarks/results/")
    p.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="these benchmarks")
    p.add_argument("--profile-steps", type=int, default=0, help="GPT steps to profile")
    p.add_argument("--notes", default="", help="a note for the report (machine load...)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.one:
        _one(args.one, args.raw, [a for a in rest if a != "--"])
        return 0
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    from benchmarks import report
    from tinytorch.bench import RESULTS, device_tag

    gpu = gpu_present()
    tag = device_tag("cuda") if gpu else "cpu"
    out = RESULTS if args.record else args.out
    raw = RESULTS / f"suite_{tag}" if args.record else args.out / "raw"
    out.mkdir(parents=True, exist_ok=True)
    raw.mkdir(parents=True, exist_ok=True)
    names = args.only or [n for n in BENCHMARKS if not (args.quick and n in QUICK_SKIP)]
    results, seconds, failed = {}, {}, {}
    with open(raw / "suite.log", "w") as log:
        for name in names:
            full, quick, needs_gpu = BENCHMARKS[name]
            if needs_gpu and not gpu:
                print(f"skip {name}: no GPU seen by CuPy", flush=True)
                continue
            flags = quick if args.quick else full
            print(f"running {name} {' '.join(flags)}", flush=True)
            try:
                results[name], seconds[name] = run_one(name, flags, raw, log)
            except RuntimeError as e:  # one broken benchmark must not lose the others' results
                failed[name] = str(e)
                print(f"  FAILED: {e}", flush=True)
                continue
            print(f"  {seconds[name]:.0f} s", flush=True)
    steps = args.profile_steps or (3 if args.quick else 20)
    print(f"profiling chapter 07's GPT step ({steps} steps)", flush=True)
    profile = profile_gpt_step(steps, out, tag)
    print(profile["table"], flush=True)
    md = report.write(
        out,
        tag,
        results,
        profile,
        dict(
            quick=args.quick,
            seconds=seconds,
            failed=failed,
            threads=machine_threads(),
            notes=args.notes,
            raw=str(raw.relative_to(ROOT) if raw.is_relative_to(ROOT) else raw),
        ),
        record=args.record,
    )
    print(f"report: {md}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
