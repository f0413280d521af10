"""Every chapter's main.py runs end to end in --quick mode and writes its outputs.

Each case carries its chapter's marker, so `pytest -m ch07` includes chapter 07's run, and
`course test 7 --workspace DIR` runs it on the learner's package. The check is on what a
learner gets: exit code 0, at least one PNG plot, and every file it wrote non-empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinytorch.course.lesson import chapter_dirs

REPO = Path(__file__).resolve().parents[1]  # the chapters; the package under test may differ
CHAPTERS = {n: d for n, d in chapter_dirs(REPO).items() if (d / "main.py").is_file()}
# no chapter found must fail loudly, not collapse to one unmarked NOTSET case
CASES = [
    pytest.param(n, marks=getattr(pytest.mark, f"ch{n:02d}"), id=d.name)
    for n, d in CHAPTERS.items()
] or [pytest.param(0, marks=pytest.mark.ch01, id="no-chapters")]


@pytest.mark.parametrize("n", CASES)
def test_chapter_quick_run(n, tmp_path):
    assert CHAPTERS, f"no chapters/NN_slug/main.py found under {REPO}"
    out = tmp_path / "out"
    # `course run` puts the package under test first (PYTHONPATH as given, e.g. a workspace)
    env = dict(os.environ, MPLBACKEND="Agg", TINYTORCH_COURSE_ROOT=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "tinytorch.course", "run", str(n), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"chapter {n} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in files), f"chapter {n} wrote no plot into {out}: {files}"
    empty = [str(p) for p in files if p.stat().st_size == 0]
    assert not empty, f"chapter {n} wrote empty files: {empty}"
    assert proc.stdout.strip(), f"chapter {n} printed no progress"


@pytest.mark.ch01
@pytest.mark.course
def test_every_chapter_is_runnable_and_listed(capsys):
    from tinytorch import course

    assert course.main(["list"]) == 0
    listed = capsys.readouterr().out
    for d in chapter_dirs(REPO).values():
        assert d.name in listed
        assert (d / "README.md").is_file(), f"{d} has no README.md lesson"
