"""The course on its real chapters: every exercise's tests catch its stub, and pass on the
reference, through the same commands a learner types (CI runs these; `course test N` does not).

- For every chapter: `course exercise N` then `course test N --workspace ws --exercise FIRST`
  fails and names the exercise; on a copy of the library (the solved workspace) it passes.
- For one fast chapter: the whole chapter suite passes on a solved workspace, its quick run
  included (the path that once collapsed to a NOTSET test and "no chapter 1").
- Consistency: every region has a NAME; region names and the lesson's `## Exercises` list
  agree; every exercise has a test marked with its name and chapter; every chapter has at
  least 6 exercises.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinytorch.course.lesson import chapter_dirs, exercise_order
from tinytorch.course.regions import regions_of

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = chapter_dirs(REPO)
REQUIRED = {1, 2, 3, 4, 5, 6, 7, 11}  # every chapter folder present counts too
MIN_EXERCISES = 6
FULL_SUITE_CHAPTER = 6  # a fast one: ~90 tests and a quick run

pytestmark = pytest.mark.course


def per_chapter(numbers):
    return [
        pytest.param(
            n,
            marks=getattr(pytest.mark, f"ch{n:02d}"),
            id=CHAPTERS[n].name if n in CHAPTERS else f"ch{n:02d}",
        )
        for n in sorted(numbers)
    ]


def regions(n: int):
    return regions_of(REPO / "tinytorch", REPO / "kernels", f"ch{n:02d}")


def names_in_order(n: int) -> list[str]:
    """Region names in the lesson's order, then any the lesson misses (source order)."""
    found = list(dict.fromkeys(r.name for r in regions(n) if r.name))
    lesson = [x for x in exercise_order(CHAPTERS[n] / "README.md") if x in found]
    return lesson + [x for x in found if x not in lesson]


def course(*args, cwd=None):
    env = dict(os.environ, TINYTORCH_COURSE_ROOT=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "tinytorch.course", *map(str, args)],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc.returncode, proc.stdout + proc.stderr


def solved_workspace(dest: Path) -> Path:
    """A workspace holding the reference code: a plain copy of the package and kernels (the
    same sources as the repository's, so the kernels come from the same build cache)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "tinytorch", dest / "tinytorch", ignore=skip)
    shutil.copytree(REPO / "kernels", dest / "kernels", ignore=skip)
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("n", per_chapter(CHAPTERS))
def test_first_exercise_fails_when_stubbed_and_passes_when_solved(n, tmp_path):
    names = names_in_order(n)
    assert names, f"chapter {n} has no named exercise regions"
    first = names[0]
    rc, out = course("exercise", n, "--into", tmp_path / "ws")
    assert rc == 0, out
    rc, out = course("test", n, "--workspace", tmp_path / "ws", "--exercise", first)
    assert rc != 0, f"the stubbed {first!r} passed its tests:\n{out[-3000:]}"
    assert f"exercise ch{n:02d}: {first} - " in out, out[-3000:]
    solved = solved_workspace(tmp_path / "solved")
    rc, out = course("test", n, "--workspace", solved, "--exercise", first)
    assert rc == 0, out[-5000:]


@pytest.mark.slow
@pytest.mark.parametrize("n", per_chapter({FULL_SUITE_CHAPTER}))
def test_the_whole_chapter_passes_on_a_solved_workspace(n, tmp_path):
    rc, out = course("test", n, "--workspace", solved_workspace(tmp_path / "ws"))
    assert rc == 0, out[-5000:]
    assert " passed" in out and "no tests ran" not in out


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    """[nodeid, [chapter markers], [exercise names]] for every test of the suite."""
    path = tmp_path_factory.mktemp("inventory") / "tests.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "tests"),
            "--co",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--course-inventory={path}",
        ],  # fmt: skip
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert path.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(path.read_text())


@pytest.mark.parametrize("n", per_chapter(set(CHAPTERS) | REQUIRED))
def test_exercises_regions_lesson_and_tests_agree(n, inventory):
    assert n in CHAPTERS, f"chapter {n:02d} has no folder chapters/{n:02d}_slug with its lesson"
    chapter = f"ch{n:02d}"
    found = regions(n)
    unnamed = [f"{r.path.relative_to(REPO)}:{r.line}" for r in found if not r.name]
    assert not unnamed, f"regions without `NAME - ` after '{chapter}: ': {unnamed}"
    names = set(names_in_order(n))
    lesson = exercise_order(CHAPTERS[n] / "README.md")
    readme = CHAPTERS[n].relative_to(REPO) / "README.md"
    assert not names - set(lesson), f"exercises missing from {readme}'s list: {names - set(lesson)}"
    assert not set(lesson) - names, (
        f"{readme} lists exercises with no region: {set(lesson) - names}"
    )
    tested = {x for _, chs, exs in inventory if chapter in chs for x in exs}
    assert not names - tested, f"exercises with no test marked {chapter} + exercise(NAME): " + str(
        sorted(names - tested)
    )
    stray = tested - names
    assert not stray, f"{chapter} tests are marked with exercises that have no region: {stray}"
    assert len(names) >= MIN_EXERCISES, (
        f"chapter {n} has {len(names)} exercises ({sorted(names)}); at least {MIN_EXERCISES}"
    )
