"""The Trainer's overhead against chapter 03's bare loop, on chapter 07's GPT (CPU).

Both train chapter 07's recipe (4 layers, 128 wide, 64 characters of context, batches of 12,
AdamW with decay groups, warmup + cosine, clipping at 1.0) on the same pre-drawn batches:

- bare:     tinytorch.train.train(...) (chapter 03's loop: train_step + scheduler);
- Trainer:  tinytorch.train.Trainer with the progress bar (tqdm) and every scalar logged each
            step to metrics.jsonl and TensorBoard (when tensorboardX is installed);
            checkpointing excluded (the benchmark turns save_checkpoint off);
- Trainer, silent: no bar, no logs (what the loop itself costs).

Each variant runs `--steps` steps per repeat; variants alternate within each repeat so that a
change of machine load hits all of them; the table gives the median ms/step and the overhead
against the bare loop. Target: at most 3% of step time.

    python -m benchmarks.trainer_cpu                 # 5 repeats of 40 steps
    python -m benchmarks.trainer_cpu --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import tinytorch as tt
from tinytorch.bench import time_cpu, write_results
from tinytorch.models import GPT, GPTConfig
from tinytorch.optim import AdamW
from tinytorch.optim.groups import decay_param_groups
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.train import Trainer, gpt_loss, train
from tinytorch.train.logging import tensorboard_available

B, T, VOCAB = 12, 64, 65


def make(seed=1337):
    tt.manual_seed(seed)
    cfg = GPTConfig(block_size=T, vocab_size=VOCAB, n_layer=4, n_head=4, n_embd=128, bias=False)
    model = GPT(cfg)
    opt = AdamW(decay_param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    sched = WarmupCosineLR(opt, 100, 2000, min_ratio=0.1)
    return model, opt, sched


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="steps per timed run")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    batches = [
        (tt.tensor(x), tt.tensor(np.roll(x, -1, axis=1)))
        for x in rng.integers(0, VOCAB, (64, B, T))
    ]
    tmp = Path(tempfile.mkdtemp(prefix="trainer_cpu_"))
    runs = {"n": 0}
    models = {name: make() for name in ("bare", "trainer", "silent")}

    def bare():
        model, opt, sched = models["bare"]
        it = iter(range(10**9))
        train(
            model,
            opt,
            lambda: batches[next(it) % len(batches)],
            args.steps,
            loss_fn=gpt_loss,
            scheduler=sched,
            clip_grad_norm=1.0,
        )

    def trainer(progress, logs):
        def run():
            model, opt, sched = models["trainer" if logs else "silent"]
            runs["n"] += 1
            t = Trainer(
                model,
                opt,
                batch_fn=lambda i: batches[i % len(batches)],
                loss_fn=gpt_loss,
                max_steps=args.steps,
                clip_grad_norm=1.0,
                scheduler=sched,
                run_dir=tmp / f"run{runs['n']}" if logs else None,
                progress=progress,
                tensorboard=None,
            )
            if progress != "off":  # the bar draws into a buffer: its cost, not the terminal's
                t.progress_file = io.StringIO()
            t.save_checkpoint = lambda is_best=False: None  # checkpointing excluded
            t.fit()

        return run

    variants = {
        "bare loop (tinytorch.train.train)": bare,
        "Trainer, bar + JSONL + TensorBoard": trainer("bar", True),
        "Trainer, silent, no logs": trainer("off", False),
    }
    times = {name: [] for name in variants}
    for fn in variants.values():  # warm-up: caches, allocator, the kernels' first build
        fn()
    for _ in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(time_cpu(fn, warmup=0, repeat=1) / args.steps)
    base = statistics.median(times["bare loop (tinytorch.train.train)"])
    rows = []
    for name, ts in times.items():
        ms = 1e3 * statistics.median(ts)
        rows.append(
            {
                "variant": name,
                "ms/step (median)": ms,
                "min ms/step": 1e3 * min(ts),
                "overhead vs bare": f"{100 * (statistics.median(ts) / base - 1):+.2f}%",
            }
        )
    tb = "on" if tensorboard_available() else "off (tensorboardX not installed)"
    write_results(
        "trainer_cpu",
        "cpu",
        list(rows[0]),
        rows,
        notes=f"Chapter 07's GPT (0.8M parameters, batch 12 x 64), {args.steps} steps per "
        f"run, median of {args.repeats} runs per variant, variants interleaved. TensorBoard "
        f"logging {tb}. Checkpointing excluded. Target: the Trainer within 3% of the bare "
        f"loop. Wall clock at the end: {time.strftime('%H:%M:%S')}.",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
