"""What every chapter's main.py shares: its command line and its output folder.

    p = chapter_args(__file__, "Chapter 07: a GPT on Shakespeare", seed=1337)
    p.add_argument("--max-iters", type=int, default=2000)   # the chapter's own flags
    p.set_quick(max_iters=40)                              # what --quick changes
    args = p.parse_args()                                  # args.out exists now (a Path)

Every chapter takes `--quick` (a short run for CI, well under a minute), `--out DIR` (default:
out/ next to its main.py), `--seed N` and `--record` (write its results under
benchmarks/results/ with `tinytorch.bench.record`). `python -m tinytorch.course run N` sets the
plotting backend (Agg) before the script starts, so main.py imports matplotlib like any module.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class _ChapterParser(argparse.ArgumentParser):
    def set_quick(self, **values) -> None:
        """The values --quick puts in place of the flags' (given or default) values."""
        self._quick = values

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        if ns.quick:
            vars(ns).update(getattr(self, "_quick", {}))
        ns.out.mkdir(parents=True, exist_ok=True)
        return ns


def chapter_args(
    main_file: str, description: str, *, seed: int = 1337, record: bool = True
) -> argparse.ArgumentParser:
    """The parser with the flags every chapter takes; add the chapter's own, then parse_args()
    (which also creates the output folder)."""
    p = _ChapterParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short run for CI, well under a minute")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(main_file).resolve().parent / "out",
        help="output folder for plots and samples (default: out/ next to main.py)",
    )
    p.add_argument("--seed", type=int, default=seed, help=f"random seed (default {seed})")
    if record:
        p.add_argument(
            "--record",
            action="store_true",
            help="also write the results under benchmarks/results/ (the files README quotes)",
        )
    return p


def char_model_args(main_file: str, description: str) -> argparse.ArgumentParser:
    """chapter_args plus the flags of the character-level models of chapters 04 and 05:
    --steps, --hidden, --embed, --batch-size, --seq-len, --lr, --clip, --eval-every,
    --eval-batches and --grad-len. Each chapter gives its own defaults for --steps, --hidden,
    --lr, --eval-every and --grad-len with `p.set_defaults(...)` (argparse's)."""
    p = chapter_args(main_file, description)
    p.add_argument("--steps", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0: none)")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-batches", type=int, default=None, help="cap on validation windows")
    p.add_argument("--grad-len", type=int, help="window for the gradient norms")
    return p


def gpt_recipe_args(main_file: str, description: str) -> argparse.ArgumentParser:
    """chapter_args plus the optimizer flags of nanoGPT's shakespeare_char recipe, which
    chapters 07 and 08 both train: --dropout 0.0, --lr 1e-3 (AdamW), --min-lr 1e-4 (the end
    of the cosine), --warmup 100 (steps), --weight-decay 0.1 (matrices only)."""
    p = chapter_args(main_file, description)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    return p


def smooth(values, k: int = 50):
    """Moving average of a noisy curve over windows of k values (k capped at the length);
    the result has len(values) - k + 1 points, the first one for the window ending at k - 1."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    k = max(1, min(k, len(v)))
    return np.convolve(v, np.ones(k) / k, mode="valid")
