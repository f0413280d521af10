"""The learner's entry point: exercise stubbing and the workspace test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tinytorch import course

pytestmark = pytest.mark.ch01

SOURCE = textwrap.dedent("""\
    def f(x):
        y = x + 1
        # BEGIN EXERCISE ch01: double it
        y = y * 2
        z = y
        # END EXERCISE
        return z

    def g():
        # BEGIN EXERCISE ch02: not this chapter
        return 1
        # END EXERCISE
""")


def test_stub_replaces_only_the_chapters_regions():
    new, n = course.stub_exercises(SOURCE, "ch01")
    assert n == 1
    assert 'raise NotImplementedError("exercise ch01: double it")' in new
    assert "y = y * 2" not in new
    assert "return 1" in new  # chapter 02's region untouched
    ns = {}
    exec(compile(new, "<stub>", "exec"), ns)
    with pytest.raises(NotImplementedError, match="double it"):
        ns["f"](1)
    assert ns["g"]() == 1


def test_unclosed_region_is_an_error():
    with pytest.raises(ValueError, match="never closed"):
        course.stub_exercises("# BEGIN EXERCISE ch01: x\npass\n", "ch01")


def test_every_marked_region_in_the_library_stubs_to_valid_python():
    for path in sorted(course.PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for ch in {m.group("ch") for line in text.splitlines() if (m := course.BEGIN.match(line))}:
            new, n = course.stub_exercises(text, ch)
            assert n > 0
            compile(new, str(path), "exec")  # a SyntaxError here would break the workspace


def test_exercise_writes_a_workspace_and_refuses_to_overwrite(tmp_path):
    cmd = [sys.executable, "-m", "tinytorch.course", "exercise", "1", "--into", str(tmp_path)]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=course.ROOT)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "tinytorch" / "__init__.py").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=course.ROOT)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_unknown_chapter_is_a_clear_error():
    with pytest.raises(SystemExit, match="no chapter 99"):
        course.main(["run", "99"])
