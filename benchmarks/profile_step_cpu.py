"""Chapter 07's GPT training step under tinytorch.profiler, for this tree or an older commit.

    python -m benchmarks.profile_step_cpu                          # this checkout
    python -m benchmarks.profile_step_cpu --commit 060a6e5^1 --name gpt_step_profile_before

With --commit, the commit's files are exported into a temporary folder (git archive) and the
step is profiled there in a child process, so a profile from before a change can be set next to
one from after it, on the same machine in the same session (chapter 12: "before and after").
The step and the profile are benchmarks/suite.py's `profile_gpt_step` (that commit's own copy
when it has one, else this one): n_layer 4, n_head 4, n_embd 128, block 64, batch 12, AdamW,
clipping. Writes benchmarks/results/<name>_cpu.md and .json: the step time with and without
the profiler and the top ops by self time per step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tinytorch.bench import ROOT, write_results

CHILD = """
import json, sys, tempfile
from pathlib import Path
from benchmarks.suite import profile_gpt_step
out = profile_gpt_step(int(sys.argv[1]), Path(tempfile.mkdtemp()), "cpu")
print(json.dumps({k: v for k, v in out.items() if k != "trace"}))
"""


def profile_in(tree: Path, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"profiling in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export(commit: str, into: Path) -> str:
    """The commit's files under `into` (git archive); returns its short hash."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if not short:
        raise SystemExit(f"--commit {commit!r} is not a commit of {ROOT}")
    tar = into / "tree.tar"
    subprocess.run(["git", "archive", "-o", str(tar), commit], cwd=ROOT, check=True)
    with tarfile.open(tar) as t:
        t.extractall(into / "tree", filter="data")
    return short


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commit", default="", help="profile this commit instead of the checkout")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--name", default="gpt_step_profile")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.commit:
            short = export(args.commit, Path(tmp))
            out, source = profile_in(Path(tmp) / "tree", args.steps), f"commit {short}"
        else:
            out, source = profile_in(ROOT, args.steps), "this checkout"
    rows = [
        {
            "op": r["name"],
            "kind": r["kind"],
            "calls per step": r["calls_per_step"],
            "self ms per step": r["self_ms_per_step"],
            "total ms per step": r["total_ms_per_step"],
        }
        for r in out["rows"][:25]
    ]
    notes = (
        f"tinytorch from {source}. Chapter 07's GPT training step (n_layer 4, n_head 4, n_embd "
        f"128, block 64, batch 12, AdamW, clipping) under tinytorch.profiler for "
        f"{out['steps']} steps: {out['step_ms']:.1f} ms a step without the profiler, "
        f"{out['step_ms_profiled']:.1f} ms with it, {out['events_per_step']:.0f} events a "
        "step. The 25 ops with the most self time; the profiler's table:\n\n```\n"
        + out["table"]
        + "\n```"
    )
    write_results(args.name, "cpu", list(rows[0]), rows, notes=notes, extra={"profile": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
