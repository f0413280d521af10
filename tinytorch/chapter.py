"""What every chapter's main.py shares: its command line and its output folder.

    p = chapter_args(__file__, "Chapter 07: a GPT on Shakespeare", seed=1337)
    p.add_argument("--max-iters", type=int, default=2000)   # the chapter's own flags
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
    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
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


def smooth(values, k: int = 50):
    """Moving average of a noisy curve over windows of k values (k capped at the length);
    the result has len(values) - k + 1 points, the first one for the window ending at k - 1."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    k = max(1, min(k, len(v)))
    return np.convolve(v, np.ones(k) / k, mode="valid")
