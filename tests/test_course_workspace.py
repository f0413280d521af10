"""The workspace path end to end, on a small demo course built in a temporary folder.

The demo repository has the course's layout (chapters/, tests/ with the real conftest.py,
tinytorch/, kernels/) and two chapters of toy exercises, so these tests check the machinery
itself (stubbing, keeping the learner's work, the lesson's order, progress) in seconds,
whatever the real chapters' exercises are. tests/test_course_chapters.py runs the real ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinytorch.course.regions import parse_regions

pytestmark = [pytest.mark.ch01, pytest.mark.course]

REPO = Path(__file__).resolve().parents[1]

DEMO = """\
def double(x):
    # BEGIN EXERCISE ch01: double - return 2 * x
    return 2 * x
    # END EXERCISE


def halve(x):
    # BEGIN EXERCISE ch01: halve - return x / 2
    return x / 2
    # END EXERCISE


def triple(x):
    # BEGIN EXERCISE ch02: triple - return 3 * x
    return 3 * x
    # END EXERCISE
"""

EXTRA = """\
def triple_twice(x):
    # BEGIN EXERCISE ch02: triple - the same exercise, second region
    return 9 * x
    # END EXERCISE
"""

CPP = """\
int twice(int x) {
    // BEGIN EXERCISE ch02: cpp_twice - return 2 x
    return 2 * x;
    // END EXERCISE
}
"""

TESTS = """\
import pytest

from tinytorch import demo


# file order: double first; the lesson lists halve first
@pytest.mark.ch01
@pytest.mark.exercise("double")
def test_double():
    assert demo.double(3) == 6


@pytest.mark.ch01
@pytest.mark.exercise("halve")
def test_halve():
    assert demo.halve(6) == 3


@pytest.mark.ch01
@pytest.mark.parametrize("k", [1, 2])
def test_skipped(k):
    pytest.skip("no CUDA GPU/CuPy on this machine")


@pytest.mark.ch02
@pytest.mark.exercise("triple")
def test_triple():
    from tinytorch import extra  # the learner deletes extra.py for a while

    assert demo.triple(2) == 6 and extra.triple_twice(1) == 9
"""


def lesson(n, title, names):
    items = "".join(
        f"{i}. `{x}` ([demo](../../tinytorch/demo.py)): do it\n" for i, x in enumerate(names, 1)
    )
    head = f"# Chapter {n:02d}: {title}\n\nIntro.\n\n## Exercises\n\n"
    return head + items + "\n## Next\n\n1. `not_one`\n"


@pytest.fixture
def demo_root(tmp_path):
    """A course repository in miniature; returns its root."""
    root = tmp_path / "repo"
    pkg = root / "tinytorch"
    (pkg / "course").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "backend.py").write_text("def cuda_is_available():\n    return False\n")
    shutil.copy(REPO / "tinytorch" / "course" / "lesson.py", pkg / "course" / "lesson.py")
    (pkg / "demo.py").write_text(DEMO)
    (pkg / "extra.py").write_text(EXTRA)
    (root / "kernels").mkdir()
    (root / "kernels" / "demo.cpp").write_text(CPP)
    for n, slug, title, names in [
        (1, "01_demo", "Demo", ["halve", "double"]),
        (2, "02_more", "More", ["triple", "cpp_twice"]),
    ]:
        (root / "chapters" / slug).mkdir(parents=True)
        (root / "chapters" / slug / "README.md").write_text(lesson(n, title, names))
    (root / "tests").mkdir()
    shutil.copy(REPO / "tests" / "conftest.py", root / "tests" / "conftest.py")
    (root / "tests" / "test_demo.py").write_text(TESTS)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def course(root, *args, cwd=None):
    """`python -m tinytorch.course ARGS` with the repository's course code and `root`'s course."""
    env = dict(os.environ, TINYTORCH_COURSE_ROOT=str(root))
    proc = subprocess.run(
        [sys.executable, "-m", "tinytorch.course", *map(str, args)],
        cwd=cwd or root.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout + proc.stderr


def status(out: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+\d+\. (\w+)\s+(pass|fail|not started)", out, re.M))


def test_exercise_test_progress_and_adding_a_chapter(demo_root):
    ws = demo_root.parent / "ws"
    rc, out = course(demo_root, "exercise", 1, "--into", ws)
    assert rc == 0, out
    assert "stubbed tinytorch/demo.py: double, halve" in out
    text = (ws / "tinytorch" / "demo.py").read_text()
    assert "    return 2 * x\n" not in text and "    return x / 2\n" not in text
    assert "    return 3 * x\n" in text  # chapter 02's code stays the reference until it is added

    rc, out = course(demo_root, "progress", "--workspace", ws)
    assert rc == 0, out
    assert status(out) == {"halve": "not started", "double": "not started"}
    assert "not in this workspace" in out  # chapter 02
    assert out.index("halve") < out.index("double")  # the lesson's order

    # one exercise's tests; the failure names the exercise
    rc, out = course(demo_root, "test", 1, "--workspace", ws, "--exercise", "double")
    assert rc == 1, out
    assert "exercise ch01: double - return 2 * x" in out
    assert "1 failed, 4 deselected" in out

    # the chapter's tests in the lesson's order, failures listed, the skips on one line
    rc, out = course(demo_root, "test", 1, "--workspace", ws, "-v")
    assert rc == 1, out
    assert out.index("test_halve") < out.index("test_double")
    assert "SKIPPED [" not in out
    assert "skipped 2: no CUDA GPU/CuPy on this machine (2)" in out
    assert "FAILED" in out and "test_triple" not in out

    rc, out = course(demo_root, "test", 1, "--workspace", ws, "--exercise", "nope")
    assert rc != 0 and "chapter 1 has no exercise 'nope'; its exercises: halve, double" in out

    # the learner solves halve, gets double wrong, and edits chapter 02's triple early
    text = text.replace(
        'raise NotImplementedError("exercise ch01: halve - return x / 2")', "return x / 2"
    )
    text = text.replace(
        'raise NotImplementedError("exercise ch01: double - return 2 * x")', "return x * 3"
    )
    text = text.replace("    return 3 * x\n", "    return x + x + x\n")
    (ws / "tinytorch" / "demo.py").write_text(text)
    (ws / "tinytorch" / "extra.py").unlink()
    rc, out = course(demo_root, "progress", "1", "--workspace", ws)
    assert status(out) == {"halve": "pass", "double": "fail"}, out
    assert "1 of 2 pass" in out

    rc, out = course(demo_root, "exercise", 2, "--into", ws)
    assert rc == 0, out
    assert "kept your version (differs from the reference): triple" in out
    new = (ws / "tinytorch" / "demo.py").read_text()
    assert new == text  # nothing of the learner's work changed
    # the missing file comes back with chapters 01 and 02 stubbed; the kernels get theirs
    assert "exercise ch02: triple" in (ws / "tinytorch" / "extra.py").read_text()
    (cpp,) = parse_regions((ws / "kernels" / "demo.cpp").read_text())
    assert cpp.name == "cpp_twice" and cpp.stubbed

    rc, out = course(demo_root, "exercise", 2, "--into", ws)
    assert rc != 0 and "already exist" in out
    rc, out = course(demo_root, "progress", "--workspace", ws)
    assert status(out) == {
        "halve": "pass",
        "double": "fail",
        "triple": "fail",  # one region done, the other (extra.py) still a stub
        "cpp_twice": "not started",
    }, out


def test_exercise_refuses_to_stub_the_repository_itself(demo_root):
    rc, out = course(demo_root, "exercise", 1, "--into", demo_root)
    assert rc != 0 and "is the course repository itself" in out
    assert (demo_root / "tinytorch" / "demo.py").read_text() == DEMO


def test_a_solved_workspace_passes_and_the_reference_is_never_used(demo_root):
    ws = demo_root.parent / "solved"
    shutil.copytree(demo_root / "tinytorch", ws / "tinytorch")
    rc, out = course(demo_root, "test", 1, "--workspace", ws)
    assert rc == 0, out
    # the same tests on a wrong copy fail: the code under test is the workspace's
    demo = ws / "tinytorch" / "demo.py"
    demo.write_text(demo.read_text().replace("    return x / 2\n", "    return x // 3\n"))
    rc, out = course(demo_root, "test", 1, "--workspace", ws, "--exercise", "halve")
    assert rc == 1 and "assert 2 == 3" in out, out


def _sabotaged_copy(dest: Path) -> Path:
    shutil.copytree(
        REPO / "tinytorch", dest / "tinytorch", ignore=shutil.ignore_patterns("__pycache__")
    )
    init = dest / "tinytorch" / "__init__.py"
    init.write_text(init.read_text() + '\nraise ImportError("this workspace is sabotaged")\n')
    return dest


def test_test_and_run_use_the_workspace_package(tmp_path):
    ws = _sabotaged_copy(tmp_path / "ws")
    env = {k: v for k, v in os.environ.items() if k != "TINYTORCH_COURSE_ROOT"}
    for args in (["test", "1"], ["run", "1", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-m", "tinytorch.course", *args, "--workspace", str(ws)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode != 0, proc.stdout
        assert "this workspace is sabotaged" in proc.stdout + proc.stderr, args


def test_commands_work_from_inside_a_workspace(tmp_path):
    ws = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if k != "TINYTORCH_COURSE_ROOT"}
    cmd = [sys.executable, "-m", "tinytorch.course"]
    made = subprocess.run(
        [*cmd, "exercise", "2", "--into", str(ws)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    # from inside, `python -m` imports the workspace's copy, which finds the repository
    listed = subprocess.run([*cmd, "list"], cwd=ws, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    for d in (REPO / "chapters").iterdir():
        if (d / "README.md").is_file():
            assert d.name in listed.stdout
    assert "in your workspace" in listed.stdout
    init = ws / "tinytorch" / "__init__.py"
    init.write_text(init.read_text() + '\nprint("THE WORKSPACE PACKAGE")\n')
    ran = subprocess.run(
        [*cmd, "run", "2", "--help"], cwd=ws, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0 and "THE WORKSPACE PACKAGE" in ran.stdout, ran.stderr
