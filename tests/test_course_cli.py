"""The course machinery's pieces: regions, stubs, lesson order, the command line's errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tinytorch import course
from tinytorch.course.lesson import exercise_order

pytestmark = [pytest.mark.ch01, pytest.mark.course]

SOURCE = textwrap.dedent("""\
    def f(x):
        y = x + 1
        # BEGIN EXERCISE ch01: double - double it, "twice"
        y = y * 2
        z = y
        # END EXERCISE
        return z

    def g():
        # BEGIN EXERCISE ch02: one - not this chapter
        return 1
        # END EXERCISE
""")

CPP = textwrap.dedent("""\
    float twice(float x) {
        // BEGIN EXERCISE ch11: twice - return 2 x
        return 2 * x;
        // END EXERCISE
    }
""")


def test_stub_replaces_only_the_chapters_regions():
    new, n = course.stub_exercises(SOURCE, "ch01")
    assert n == 1
    assert "raise NotImplementedError(\"exercise ch01: double - double it, 'twice'\")" in new
    assert "y = y * 2" not in new
    assert "return 1" in new  # chapter 02's region untouched
    ns = {}
    exec(compile(new, "<stub>", "exec"), ns)
    with pytest.raises(NotImplementedError, match="exercise ch01: double - double it"):
        ns["f"](1)
    assert ns["g"]() == 1
    again, n2 = course.stub_exercises(new, "ch01")
    assert (again, n2) == (new, 1)  # stubbing twice changes nothing


def test_cpp_regions_stub_to_a_throw():
    new, n = course.stub_exercises(CPP, "ch11")
    assert n == 1 and "return 2 * x;" not in new
    assert '    throw std::runtime_error("exercise ch11: twice - return 2 x");\n' in new
    (r,) = course.parse_regions(new)
    assert (r.chapter, r.name, r.stubbed) == ("ch11", "twice", True)


def test_regions_carry_name_and_know_a_stub_from_work():
    regions = course.parse_regions(SOURCE)
    assert [(r.chapter, r.name, r.line) for r in regions] == [
        ("ch01", "double", 3),
        ("ch02", "one", 10),
    ]
    assert not regions[0].stubbed
    stubbed = course.parse_regions(course.stub_exercises(SOURCE, "ch01")[0])
    assert stubbed[0].stubbed and not stubbed[1].stubbed
    unnamed = course.parse_regions("# BEGIN EXERCISE ch01: no name here\npass\n# END EXERCISE\n")
    assert unnamed[0].name is None  # the consistency test reports these


def test_keep_leaves_a_region_alone():
    two = SOURCE.replace("ch02: one", "ch01: one")
    new, n = course.stub_exercises(two, "ch01", keep=lambda k: k == 0)
    assert n == 1 and "y = y * 2" in new and "return 1" not in new


def test_unclosed_region_is_an_error():
    with pytest.raises(ValueError, match="never closed"):
        course.stub_exercises("# BEGIN EXERCISE ch01: x - y\npass\n", "ch01")
    with pytest.raises(ValueError, match="never closed"):  # a second BEGIN before the END
        course.parse_regions("# BEGIN EXERCISE ch01: a - b\n# BEGIN EXERCISE ch01: c - d\n")


def test_every_marked_region_in_the_library_stubs_to_valid_python():
    for path in sorted(course.PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for ch in {r.chapter for r in course.parse_regions(text, path)}:
            new, n = course.stub_exercises(text, ch)
            assert n > 0
            compile(new, str(path), "exec")  # a SyntaxError here would break the workspace
    for path in sorted((course.ROOT / "kernels").glob("*.c*")):  # C++: opened and closed
        for r in course.parse_regions(path.read_text(encoding="utf-8"), path):
            assert course.stub_exercises(path.read_text(encoding="utf-8"), r.chapter)[1] > 0


def test_a_workspace_builds_its_own_kernels_only_when_they_differ(tmp_path):
    shutil.copytree(course.ROOT / "kernels", tmp_path / "kernels")
    env = course.course_env(tmp_path)
    assert env["TINYTORCH_KERNEL_SRC"] == str(course.ROOT / "kernels")  # same build, cached
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path)
    assert env["TINYTORCH_COURSE_ROOT"] == str(course.ROOT)
    cpp = next((tmp_path / "kernels").glob("*.cpp"))
    cpp.write_text(cpp.read_text() + "\n// the learner's change\n")
    assert course.course_env(tmp_path)["TINYTORCH_KERNEL_SRC"] == str(tmp_path / "kernels")


def test_lesson_order_reads_the_numbered_list(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Chapter 01: X\n\n## Exercises\n\nIntro `not_this`.\n\n"
        "1. `unbroadcast` ([a](b)): text\n   more `not_this_either`\n"
        "2. **`topo_order`** (c): text\n\n### Hints\n\n3. `hint_item`: still inside\n\n"
        "## Next\n\n1. `outside`\n"
    )
    assert exercise_order(readme) == ["unbroadcast", "topo_order", "hint_item"]
    assert exercise_order(tmp_path / "missing.md") == []


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tinytorch.course", *args],
        capture_output=True,
        text=True,
        cwd=cwd or course.ROOT,
    )


def test_unknown_chapter_is_a_clear_error():
    with pytest.raises(SystemExit, match="no chapter 99"):
        course.main(["run", "99"])


def test_unknown_exercise_lists_the_chapters_exercises():
    with pytest.raises(SystemExit, match="chapter 1 has no exercise 'no_such_thing'; its exer"):
        course.main(["test", "1", "--exercise", "no_such_thing"])


def test_a_folder_without_a_package_is_not_a_workspace(tmp_path):
    with pytest.raises(SystemExit, match="holds no tinytorch/ package: create it with"):
        course.main(["test", "1", "--workspace", str(tmp_path)])


def test_test_without_pytest_says_how_to_install(tmp_path):
    # a fake `pytest` that cannot be found: run the CLI with an import hook that hides it
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'pytest' else real(n, *a)\n"
        "from tinytorch.course import main\n"
        "sys.exit(main(['test', '1']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'pip install -e ".[test]"' in proc.stderr


def test_exercise_writes_a_workspace_and_refuses_to_add_a_chapter_twice(tmp_path):
    first = _cli("exercise", "1", "--into", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "tinytorch" / "__init__.py").is_file()
    assert (tmp_path / "kernels").is_dir()  # chapter 11's C++ exercises build from here
    again = _cli("exercise", "1", "--into", str(tmp_path))
    assert again.returncode != 0 and "already exist" in again.stderr
    assert "your work is kept" in again.stderr
