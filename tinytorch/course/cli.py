"""The `python -m tinytorch.course` commands: list, run, exercise, test, progress."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import paths
from .lesson import exercise_order
from .paths import PACKAGE, chapters, course_root, home_workspace, read_record, title
from .regions import SUFFIXES, regions_of
from .workspace import AlreadyThere, add_chapter

USAGE = """\
  python -m tinytorch.course list                       the chapters and their exercises
  python -m tinytorch.course run N [--workspace DIR] [ARGS...]
                                  run chapter N's main.py (ARGS go to it, e.g. --quick) on the
                                  repository's package, or on DIR/tinytorch
  python -m tinytorch.course exercise N --into DIR      put chapter N's exercises into DIR: a
                                  copy of tinytorch/ and kernels/ with chapter N's regions stubbed
                                  (an existing workspace keeps your earlier work)
  python -m tinytorch.course test N [--workspace DIR] [--exercise NAME] [PYTEST ARGS...]
                                  chapter N's tests (in the lesson's exercise order) against
                                  DIR/tinytorch, or only those of one exercise
  python -m tinytorch.course progress [--workspace DIR] [N...]
                                  each exercise of the workspace: pass / fail / not started

Inside a workspace (cd DIR) the commands use DIR by default.
"""


def _chapter(n: int) -> Path:
    chs = chapters()
    if n not in chs:
        have = ", ".join(str(k) for k in chs) or "none"
        raise SystemExit(
            f"no chapter {n}: chapters present are {have} (in {course_root()}; see `list`)"
        )
    return chs[n]


def exercises(n: int) -> list[str]:
    """Chapter n's exercise names: the lesson's order, then any it does not list (source order)."""
    root = course_root()
    names = []
    for r in regions_of(root / "tinytorch", root / "kernels", f"ch{n:02d}"):
        if r.name and r.name not in names:
            names.append(r.name)
    lesson = [x for x in exercise_order(_chapter(n) / "README.md") if x in names]
    return lesson + [x for x in names if x not in lesson]


def _workspace(arg: str | None, n: int | None = None) -> Path | None:
    """The workspace to use: --workspace, or the one this package runs from, or None."""
    if arg is None:
        return home_workspace()
    ws = Path(arg).expanduser().resolve()
    if not (ws / "tinytorch" / "__init__.py").is_file():
        hint = n if n is not None else "N"
        raise SystemExit(
            f"{ws} holds no tinytorch/ package: create it with "
            f"`python -m tinytorch.course exercise {hint} --into {arg}`"
        )
    return ws


def course_env(target: Path) -> dict[str, str]:
    """The environment that makes `target`/tinytorch the package imported, with its kernels."""
    env = dict(os.environ)
    rest = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join([str(target), rest]) if rest else str(target)
    env[paths.ROOT_ENV] = str(course_root())
    kernels = target / "kernels"
    mine = kernels.is_dir() and _differ(kernels, course_root() / "kernels")
    env["TINYTORCH_KERNEL_SRC"] = str(kernels if mine else course_root() / "kernels")
    return env


def _differ(a: Path, b: Path) -> bool:
    """Whether two kernel source folders differ. The build cache is keyed by the folder too:
    a workspace whose kernels are the reference's shares the reference's build."""

    def sources(d: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(d.glob("*")) if p.suffix in SUFFIXES}

    return not b.is_dir() or sources(a) != sources(b)


def cmd_list(args) -> int:
    ws = _workspace(args.workspace)
    mine = set(read_record(ws).get("chapters", [])) if ws else set()
    for n, folder in chapters().items():
        k = len(exercises(n))
        notes = [f"{k} exercises" if k else "no exercises yet"]
        if not (folder / "main.py").is_file():
            notes.append("no main.py yet")
        if n in mine:
            notes.append("in your workspace")
        print(f"{n:02d}  {folder.name:<18} {title(folder)}  ({', '.join(notes)})")
    return 0


def cmd_run(args) -> int:
    main = _chapter(args.n) / "main.py"
    if not main.is_file():
        raise SystemExit(f"chapter {args.n} has no main.py at {main}")
    ws = _workspace(args.workspace, args.n)
    env = course_env(ws or PACKAGE.parent)
    env.setdefault("MPLBACKEND", "Agg")  # plots go to files; no window needed
    return subprocess.call([sys.executable, str(main), *args.rest], env=env)


def cmd_exercise(args) -> int:
    _chapter(args.n)
    ws = Path(args.into).expanduser().resolve()
    if ws == course_root() or (ws / "chapters").is_dir():
        raise SystemExit(f"{ws} is the course repository itself; choose another folder")
    ws.mkdir(parents=True, exist_ok=True)
    try:
        log = add_chapter(ws, args.n, course_root())
    except AlreadyThere as e:
        raise SystemExit(str(e)) from None
    print("\n".join(log))
    names = exercises(args.n)
    if names:
        print(f"chapter {args.n}'s exercises, in the lesson's order: {', '.join(names)}")
    print(
        f"check your work with\n"
        f"  python -m tinytorch.course test {args.n} --workspace {args.into}"
        + (f" --exercise {names[0]}" if names else "")
    )
    return 0


def _test_paths(names: list[str]) -> list[str]:
    """The test files that can hold tests of `names` (each names them in quotes), else tests/.

    Collecting the whole suite takes many seconds; one exercise's tests sit in a few files.
    """
    tests = course_root() / "tests"
    if names:
        quoted = [q for x in names for q in (f'"{x}"', f"'{x}'")]
        files = [
            str(p)
            for p in sorted(tests.glob("test_*.py"))
            if any(q in p.read_text(encoding="utf-8") for q in quoted)
        ]
        if files:
            return files
    return [str(tests)]


def _pytest_cmd(n: int, marker: str, extra: list[str], names: list[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        *_test_paths(list(names)),
        "-m",
        f"ch{n:02d} and {marker}",
        "-p",
        "no:cacheprovider",
        *extra,
    ]


def _need_pytest() -> None:
    if importlib.util.find_spec("pytest") is None:
        raise SystemExit(
            "pytest is not installed: install the package with its test extra, from "
            f'{course_root()}:\n  pip install -e ".[test]"'
        )


def _check_exercise(n: int, name: str) -> None:
    names = exercises(n)
    if name not in names:
        listed = ", ".join(names) if names else "none yet"
        raise SystemExit(f"chapter {n} has no exercise {name!r}; its exercises: {listed}")


def cmd_test(args) -> int:
    _chapter(args.n)
    if args.exercise:
        _check_exercise(args.n, args.exercise)
    _need_pytest()
    ws = _workspace(args.workspace, args.n)
    target = ws or PACKAGE.parent
    extra = ["-rfE", "--tb=short", "--lesson-order"]
    names = [args.exercise] if args.exercise else []
    for name in names:
        extra += ["--exercise", name]
    cmd = _pytest_cmd(args.n, "not course", [*extra, *args.rest], names)
    print("running:", " ".join(cmd), f"(tinytorch from {target})", flush=True)
    rc = subprocess.call(cmd, cwd=target, env=course_env(target))
    if rc == 5 and args.exercise:
        print(f"no test of chapter {args.n} is marked exercise({args.exercise!r})")
    return rc


def cmd_progress(args) -> int:
    _need_pytest()
    ws = _workspace(args.workspace)
    if ws is None:
        raise SystemExit("which workspace? pass --workspace DIR (or run this from inside it)")
    mine = set(read_record(ws).get("chapters", []))
    wanted = args.chapters or sorted(chapters())
    for n in wanted:
        folder = _chapter(n)
        names = exercises(n)
        if not names:
            continue
        print(f"Chapter {n:02d}: {title(folder)}")
        if n not in mine:
            print(f"  not in this workspace: python -m tinytorch.course exercise {n} --into {ws}")
            continue
        status = _chapter_status(n, names, ws)
        width = max(len(x) for x in names)
        for i, name in enumerate(names, 1):
            print(f"  {i:2d}. {name:<{width}}  {status[name]}")
        passed = sum(s == "pass" for s in status.values())
        todo = [x for x in names if status[x] != "pass"]
        print(f"  {passed} of {len(names)} pass")
        if todo:
            print(
                f"  next: python -m tinytorch.course test {n} --workspace {ws} --exercise {todo[0]}"
            )
    return 0


def _chapter_status(n: int, names: list[str], ws: Path) -> dict[str, str]:
    """pass / fail / not started per exercise, from one pytest run over the started ones."""
    chapter = f"ch{n:02d}"
    regions = regions_of(ws / "tinytorch", ws / "kernels", chapter)
    status = {}
    for name in names:
        mine = [r for r in regions if r.name == name]
        status[name] = "not started" if mine and all(r.stubbed for r in mine) else ""
    started = [x for x in names if not status[x]]
    if not started:
        return status
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        extra = ["-q", "--no-header", "-rN", f"--course-report={report}"]
        for name in started:
            extra += ["--exercise", name]
        cmd = _pytest_cmd(n, "exercise and not course", extra, started)
        proc = subprocess.run(cmd, cwd=ws, env=course_env(ws), capture_output=True, text=True)
        results = json.loads(report.read_text()) if report.is_file() else {}
    for name in started:
        r = results.get(f"{chapter}:{name}", {})
        if r.get("failed"):
            status[name] = "fail"
        elif r.get("passed"):
            status[name] = "pass"
        else:
            status[name] = "no test ran" if proc.returncode in (0, 5) else "fail"
    if proc.returncode not in (0, 1, 5):  # pytest itself failed (collection, usage)
        print("  pytest could not run the tests:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])
    return status


def _no_abbrev(add_parser):
    def add(*args, **kwargs):
        return add_parser(*args, allow_abbrev=False, **kwargs)

    return add


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinytorch.course",
        allow_abbrev=False,
        description="The course's commands:\n\n" + USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser = _no_abbrev(sub.add_parser)  # `--ex` given to pytest is not --exercise
    ls = sub.add_parser("list", help="list the chapters")
    ls.add_argument("--workspace", default=None)
    ls.set_defaults(fn=cmd_list)
    # add_help=False: `run N --help` shows the chapter's own options
    r = sub.add_parser("run", help="run chapter N's main.py (other args go to it)", add_help=False)
    r.add_argument("n", type=int)
    r.add_argument("--workspace", default=None)
    r.set_defaults(fn=cmd_run)
    t = sub.add_parser("test", help="run chapter N's tests (other args go to pytest)")
    t.add_argument("n", type=int)
    t.add_argument("--workspace", default=None)
    t.add_argument("--exercise", default=None, metavar="NAME")
    t.set_defaults(fn=cmd_test)
    e = sub.add_parser("exercise", help="put chapter N's exercises into a workspace")
    e.add_argument("n", type=int)
    e.add_argument("--into", required=True)
    e.set_defaults(fn=cmd_exercise)
    g = sub.add_parser("progress", help="each exercise of a workspace: pass / fail / not started")
    g.add_argument("chapters", type=int, nargs="*")
    g.add_argument("--workspace", default=None)
    g.set_defaults(fn=cmd_progress)
    args, extra = p.parse_known_args(argv)
    if args.cmd in ("run", "test"):
        args.rest = extra
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.fn(args)
