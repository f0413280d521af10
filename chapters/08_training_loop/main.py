"""Chapter 08: the full training loop on chapter 07's GPT and tinyshakespeare.

    python -m tinytorch.course run 8                      # the recipe + experiments (minutes)
    python -m tinytorch.course run 8 --quick              # a smoke run for CI (seconds)
    python -m tinytorch.course run 8 --max-steps 1000     # stop at step 1000 (checkpointed)
    python -m tinytorch.course run 8 --resume             # continue from out/checkpoints/last
    python -m tinytorch.course run 8 --record             # also write benchmarks/results/

The recipe: chapter 07's GPT (4 layers, 128 wide, 64 characters of context) with dropout 0.1;
AdamW (betas 0.9, 0.99), weight decay 0.1 on the matrices only (decay groups); 100 warmup
steps then a cosine from 1e-3 to 1e-4; gradients clipped at norm 1.0; each step accumulates 2
micro-batches of 12 sequences (a batch of 24), 3000 steps; validation every 200 steps on 20
fixed batches, checkpoints (last, best, the 3 newest), early stopping after 5 evaluations
without progress.
Then the experiments (experiments.py) on a smaller GPT. Everything goes into --out (default
chapters/08_training_loop/out/): checkpoints/, metrics.jsonl, tb/ (TensorBoard), curves.png,
the experiments' figures and folders, samples.txt, metrics.json.
"""

from __future__ import annotations

import json
import time

import experiments as ex
import numpy as np
from shakespeare import batch_fn, fixed_batches, load_corpus, make_gpt

import tinytorch as tt
from tinytorch.bench import record
from tinytorch.chapter import gpt_recipe_args
from tinytorch.generate import generate
from tinytorch.optim import AdamW
from tinytorch.optim.groups import decay_param_groups
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.train import EarlyStopping, LambdaCallback, Trainer, evaluate, gpt_loss, plot_run

# chapter 07 after 2000 iterations (benchmarks/results/gpt_ch07_shakespeare_cpu.md): validation
# loss over 20 and over 200 batches
CH07_VAL, CH07_VAL_200 = 1.899, 1.903

p = gpt_recipe_args(__file__, "Chapter 08: the training loop")
p.set_defaults(dropout=0.1)
p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
p.add_argument("--max-steps", type=int, default=None, help="stop after this step (checkpointed)")
p.add_argument("--steps", type=int, default=3000, help="the schedule's length in steps")
p.add_argument("--micro-batch", type=int, default=12)
p.add_argument("--accumulation", type=int, default=2)
p.add_argument("--eval-every", type=int, default=200)
p.add_argument("--eval-batches", type=int, default=20)
p.add_argument("--final-eval-batches", type=int, default=200)
p.add_argument("--skip-experiments", action="store_true", help="only the main run")
p.set_quick(steps=16, warmup=4, eval_every=8, eval_batches=2, final_eval_batches=4)
args = p.parse_args()
block = 64
out = args.out

corpus = load_corpus()
print(f"tinyshakespeare: {len(corpus.train):,} train / {len(corpus.val):,} val characters")

# ---- the main run ---------------------------------------------------------------------------
tt.manual_seed(args.seed)
model = make_gpt(corpus.vocab_size, block_size=block, dropout=args.dropout)
optimizer = AdamW(decay_param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.99))
scheduler = WarmupCosineLR(optimizer, args.warmup, args.steps, min_ratio=args.min_lr / args.lr)
val = fixed_batches(corpus.val, args.eval_batches, args.micro_batch, block, args.seed)
stop_at = args.max_steps or args.steps
interrupt = LambdaCallback(
    on_step_end=lambda t, logs: setattr(t, "should_stop", t.should_stop or t.step >= stop_at)
)
trainer = Trainer(
    model,
    optimizer,
    batch_fn=batch_fn(corpus.train, args.micro_batch, block, args.seed),
    loss_fn=gpt_loss,
    max_steps=args.steps,
    accumulation_steps=args.accumulation,
    clip_grad_norm=1.0,
    scheduler=scheduler,
    val_data=val,
    eval_every=args.eval_every,
    run_dir=out,
    checkpoint_every=args.eval_every,
    keep_checkpoints=3,
    callbacks=[EarlyStopping("val_loss", patience=5, min_delta=0.0), interrupt],
)
print(
    f"GPT: {model.get_num_params() / 1e6:.2f}M parameters; {args.steps} steps of "
    f"{args.accumulation} x {args.micro_batch} sequences of {block} characters -> {out}",
    flush=True,
)
t0 = time.perf_counter()
trainer.fit(resume=args.resume)
seconds = time.perf_counter() - t0
curves = plot_run(out, title="chapter 08: GPT on tinyshakespeare")
if trainer.step < args.steps and not trainer.stop_reason:
    print(f"stopped at step {trainer.step}; continue with --resume (same --out)")
rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
step_ms = [r["train/step_ms"] for r in rows if "train/step_ms" in r]
final_batches = fixed_batches(corpus.val, args.final_eval_batches, args.micro_batch, block, 1)
final_val = evaluate(model, final_batches, gpt_loss)
last_eval = trainer.evals[-1] if trainer.evals else {"val_loss": float("nan"), "step": 0}
print(
    f"step {trainer.step}: val loss {last_eval['val_loss']:.4f} ({args.eval_batches} batches), "
    f"{final_val:.4f} over {args.final_eval_batches} batches; chapter 07: {CH07_VAL} / "
    f"{CH07_VAL_200}",
    flush=True,
)
prompt = tt.tensor([corpus.tokenizer.encode("\n")])
sample = corpus.tokenizer.decode(
    generate(
        model, prompt, 200 if not args.quick else 20, temperature=0.8, top_k=20, seed=args.seed
    )[0].tolist()
)
(out / "samples.txt").write_text(sample + "\n", encoding="utf-8")
print(sample)

# ---- the experiments ------------------------------------------------------------------------
results = {}
if not args.skip_experiments:
    s = ex.Small(eval_batches=2 if args.quick else 8)

    def n(full, quick):
        return quick if args.quick else full

    exp = out / "experiments"
    exp.mkdir(exist_ok=True)
    print("experiment: learning-rate sweep", flush=True)
    lrs = [1e-3, 1e-2] if args.quick else list(np.geomspace(1e-4, 1e-1, 7))
    results["lr_sweep"] = ex.lr_sweep(corpus, s, args.seed, exp, lrs, n(200, 6))
    print("experiment: warmup vs none", flush=True)
    results["warmup"] = ex.warmup(corpus, s, args.seed, exp, 3e-2, n(300, 6))
    print("experiment: overfitting a small subset", flush=True)
    results["overfitting"] = ex.overfitting(corpus, s, args.seed, exp, n(1500, 6))
    print("experiment: batch size through accumulation", flush=True)
    results["batch_size"] = ex.batch_size(corpus, s, args.seed, exp, n(200, 4))
    print("experiment: grid vs random search (vs Optuna)", flush=True)
    results["search"] = ex.search(corpus, s, args.seed, exp, n(150, 4), n_side=n(3, 2))
    print("experiment: stop halfway and resume", flush=True)
    results["resume"] = ex.resume(corpus, s, args.seed, exp / "resume", n(60, 6))

metrics = {
    "steps": trainer.step,
    "val_loss": last_eval["val_loss"],
    "val_loss_final_eval": final_val,
    "final_eval_batches": args.final_eval_batches,
    "best_val_loss": trainer.best,
    "best_step": trainer.best_step,
    "stop_reason": trainer.stop_reason,
    "ms_per_step_median": float(np.median(step_ms[10:] or step_ms)) if step_ms else None,
    "seconds_main_run": seconds,
    "evals": trainer.evals,
    "experiments": results,
}
(out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
print(f"done: main run {seconds:.0f}s; outputs in {out}")

if args.record:
    figures = [curves] + [
        out / "experiments" / f
        for f in ("lr_sweep.png", "warmup.png", "overfitting.png", "batch_size.png", "search.png")
        if (out / "experiments" / f).is_file()
    ]
    row = {
        "seed": args.seed,
        "steps": trainer.step,
        "batch (micro x k)": f"{args.micro_batch} x {args.accumulation}",
        "val loss (20 batches)": last_eval["val_loss"],
        f"val loss ({args.final_eval_batches} batches)": final_val,
        "chapter 07 val (20 / 200 batches)": f"{CH07_VAL} / {CH07_VAL_200}",
        "ms/step (median)": metrics["ms_per_step_median"],
        "main run s": seconds,
        "resume bit-identical": results.get("resume", {}).get("identical"),
    }
    record(
        "training_loop_ch08",
        "cpu",
        list(row),
        [row],
        notes="chapters/08_training_loop/main.py: chapter 07's GPT with dropout 0.1, AdamW "
        "with decay groups, warmup + cosine, clipping at 1.0, 2 accumulated micro-batches of "
        "12, eval every 200 steps, checkpoints, early stopping (patience 5). Experiments on "
        "a 2-layer 64-wide GPT; their numbers are in the JSON under experiments.",
        extra=metrics,
        figures=figures,
    )
