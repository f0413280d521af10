"""What freed-memory reuse (tinytorch/memory.py) buys: chapter 07's GPT step with and without it.

The training step of chapter 07's recipe (n_layer 4, n_head 4, n_embd 128, block 64, batch 12,
AdamW, clipping) runs in two child processes, one as tinytorch sets malloc up by default and
one with TINYTORCH_KEEP_FREED_MEMORY=0 (glibc's own thresholds). Each process does 10 warm-up
steps, then --steps timed ones, and reports the median wall time per step, the CPU time per step
(all threads) and the minor page faults per step (getrusage). The two alternate --rounds times,
so that a slow spell of a shared machine hits both.

    python -m benchmarks.memory_cpu [--steps 100] [--rounds 3]

Writes benchmarks/results/memory_cpu_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tinytorch.bench import write_results

HERE = Path(__file__).resolve().parent

# chapter 07's GPT training step in a child process, warmed up (profiler_overhead_cpu uses it too)
GPT_STEP = """
cfg = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
model = GPT(GPTConfig(**cfg))
opt = AdamW(model.optimizer_groups(0.1), lr=1e-3, betas=(0.9, 0.99))
rng = np.random.default_rng(0)


def step():
    batch = tuple(tt.tensor(rng.integers(0, 65, (12, 64))) for _ in range(2))
    train_step(model, opt, batch, loss_fn=lambda m, b: m(*b)[1], clip_grad_norm=1.0)


for _ in range(10):
    step()
"""

CHILD = (
    """
import json, sys, time
import numpy as np
import tinytorch as tt
from tinytorch.bench import time_cpu
from tinytorch.memory import KEPT, page_faults
from tinytorch.models import GPT, GPTConfig
from tinytorch.optim import AdamW
from tinytorch.train import train_step

"""
    + GPT_STEP
    + """
steps = int(sys.argv[1])
c0, f0 = time.process_time(), page_faults()
ms = time_cpu(step, warmup=0, repeat=steps) * 1e3
print(json.dumps(dict(
    kept=KEPT,
    ms_per_step=ms,
    cpu_ms_per_step=(time.process_time() - c0) / steps * 1e3,
    page_faults_per_step=(page_faults() - f0) / steps,
)))
"""
)


def run_child(keep: bool, steps: int) -> dict:
    env = dict(os.environ, TINYTORCH_KEEP_FREED_MEMORY="1" if keep else "0")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps)],
        env=env,
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs = {True: [], False: []}
    for r in range(args.rounds):
        for keep in (True, False):
            res = run_child(keep, args.steps)
            runs[keep].append(res)
            print(f"round {r}: keep={keep} {res}", flush=True)
    rows = []
    for keep in (True, False):
        rs = runs[keep]
        rows.append(
            dict(
                malloc="keeps freed memory (default)" if keep else "glibc's own (opt-out)",
                ms_per_step=statistics.median(r["ms_per_step"] for r in rs),
                cpu_ms_per_step=statistics.median(r["cpu_ms_per_step"] for r in rs),
                page_faults_per_step=statistics.median(r["page_faults_per_step"] for r in rs),
                ms_per_step_each_round=", ".join(f"{r['ms_per_step']:.1f}" for r in rs),
            )
        )
    rows[0]["speedup"] = rows[1]["ms_per_step"] / rows[0]["ms_per_step"]
    rows[1]["speedup"] = 1.0
    notes = (
        f"Chapter 07's GPT training step (n_layer 4, n_head 4, n_embd 128, block 64, batch 12), "
        f"tinytorch on the CPU; each row: medians over {args.rounds} child processes of "
        f"{args.steps} timed steps after 10 warm-up steps, the two settings alternating. "
        "cpu_ms_per_step counts every thread's CPU time (2 cores: up to 2x the wall time). "
        "speedup = the opt-out's ms_per_step / this row's."
    )
    write_results(
        "memory_cpu",
        "cpu",
        [
            "malloc",
            "ms_per_step",
            "speedup",
            "cpu_ms_per_step",
            "page_faults_per_step",
            "ms_per_step_each_round",
        ],
        rows,
        notes,
        extra={"runs": {str(k): v for k, v in runs.items()}},
    )


if __name__ == "__main__":
    main()
