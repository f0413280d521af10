"""Suite-wide conventions (the rules are this docstring; the code below enforces them).

- One device parametrization: a test that takes the `device` fixture runs on "cpu", and on
  "cuda" when a GPU and CuPy are present (marked `cuda`, skipped with the reason otherwise).
- Every test carries a chapter marker `ch01`..`ch12`; collection fails if one does not, so
  `pytest -m chNN` (and `python -m tinytorch.course test N`) never misses a test.
- A test of one exercise region also carries `@pytest.mark.exercise("NAME")` (the NAME of the
  region `# BEGIN EXERCISE chNN: NAME - ...`); collection fails on an `exercise` marker
  without a name. Tests of the course machinery itself carry `course` (not run by `course test`).
- Helpers (`assert_close` with the per-dtype tolerances, `to_numpy`) live in tests/helpers.py.

Options for the course CLI (`python -m tinytorch.course test|progress` passes them):
  --exercise NAME     run only the tests marked exercise(NAME) (repeatable)
  --lesson-order      order the tests by their exercise's place in the lesson's list
  --course-report F   write {"chNN:NAME": {"passed": n, "failed": n, "skipped": n}} to F
  --course-inventory F  write [[nodeid, [chapters], [exercises]], ...] of the collected tests
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from tinytorch import backend

CHAPTER = re.compile(r"ch\d\d$")
_HERE = Path(__file__).resolve().parent
REPO = _HERE.parent  # chapters and lessons come from here, whatever package is under test

# The course data lives outside the repository (never committed); CI points here too.
os.environ.setdefault("TINYTORCH_DATA_DIR", str(_HERE.parent.parent / "shared" / "data"))


def _load_lesson_module():
    """The repository's tinytorch/course/lesson.py (not a workspace's copy of it)."""
    spec = importlib.util.spec_from_file_location(
        "_tinytorch_course_lesson", REPO / "tinytorch" / "course" / "lesson.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_addoption(parser):
    group = parser.getgroup("tinytorch course")
    group.addoption("--exercise", action="append", default=[], metavar="NAME",
                    help="run only the tests marked exercise(NAME); repeatable")  # fmt: skip
    group.addoption("--lesson-order", action="store_true",
                    help="order tests by their exercise's place in the lesson")  # fmt: skip
    group.addoption("--course-report", default=None, metavar="PATH",
                    help="write each exercise's passed/failed/skipped counts as JSON")  # fmt: skip
    group.addoption("--course-inventory", default=None, metavar="PATH",
                    help="write every collected test's chapters and exercises as JSON")  # fmt: skip


def exercise_names(item) -> list[str]:
    return [m.args[0] for m in item.iter_markers("exercise") if m.args]


def _chapters(item) -> list[str]:
    return [m.name for m in item.iter_markers() if CHAPTER.match(m.name)]


def pytest_collection_modifyitems(config, items):
    missing = [it.nodeid for it in items if not _chapters(it)]
    if missing:
        raise pytest.UsageError(
            "every test needs a chapter marker (ch01..ch12); missing on:\n  " + "\n  ".join(missing)
        )
    unnamed = [
        it.nodeid
        for it in items
        if any(
            len(m.args) != 1 or not isinstance(m.args[0], str) for m in it.iter_markers("exercise")
        )
    ]
    if unnamed:
        raise pytest.UsageError(
            'an exercise marker takes one name, exercise("NAME"); wrong on:\n  '
            + "\n  ".join(unnamed)
        )
    inventory = config.getoption("course_inventory")
    if inventory:
        Path(inventory).write_text(
            json.dumps([[it.nodeid, _chapters(it), exercise_names(it)] for it in items], indent=0)
        )
    wanted = set(config.getoption("exercise"))
    if wanted:
        keep = [it for it in items if wanted & set(exercise_names(it))]
        dropped = [it for it in items if not wanted & set(exercise_names(it))]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if config.getoption("lesson_order"):
        orders = _load_lesson_module().lesson_orders(REPO)

        def place(item) -> int:
            ranks = [
                orders[ch].index(name)
                for ch in _chapters(item)
                for name in exercise_names(item)
                if name in orders.get(ch, [])
            ]
            return min(ranks, default=1 << 30)  # tests of no listed exercise come last

        items.sort(key=place)  # stable: file order within an exercise


_RESULTS: dict[str, Counter] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if item.config.getoption("course_report") and (rep.when == "call" or not rep.passed):
        for ch in _chapters(item):
            for name in exercise_names(item):
                _RESULTS.setdefault(f"{ch}:{name}", Counter())[rep.outcome] += 1


def pytest_sessionfinish(session):
    path = session.config.getoption("course_report")
    if path:
        Path(path).write_text(json.dumps({k: dict(v) for k, v in _RESULTS.items()}, indent=1))


def pytest_terminal_summary(terminalreporter, config):
    """One line for the skipped tests (grouped by reason) unless -rs/-ra lists each one."""
    chars = config.getoption("reportchars") or ""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or "s" in chars or "a" in chars or "A" in chars:
        return
    reasons = Counter(
        str(rep.longrepr[2]).removeprefix("Skipped: ")
        if isinstance(rep.longrepr, tuple)
        else "skipped"
        for rep in skipped
    )
    terminalreporter.write_line(
        f"skipped {len(skipped)}: " + "; ".join(f"{r} ({k})" for r, k in reasons.most_common())
    )


_CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(
            not backend.cuda_is_available(), reason="no CUDA GPU/CuPy on this machine"
        ),
    ],
)


@pytest.fixture(params=["cpu", _CUDA])
def device(request):
    """The device a test runs on: "cpu", and "cuda" where a GPU is present."""
    return request.param
