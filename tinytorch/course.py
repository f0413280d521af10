"""The learner's entry point.

    python -m tinytorch.course list                     the chapters and what each builds
    python -m tinytorch.course run N [ARGS...]          run chapter N's main.py (ARGS passed on,
                                                        e.g. --quick)
    python -m tinytorch.course test N [--workspace DIR] [PYTEST ARGS...]
                                                        run chapter N's tests (marker chNN),
                                                        against DIR/tinytorch if given
    python -m tinytorch.course exercise N --into DIR    copy the package to DIR/tinytorch with
                                                        chapter N's exercise regions stubbed out

Exercise regions are marked in the library source, one style everywhere:

    # BEGIN EXERCISE chNN: what to write
    ...the reference solution...
    # END EXERCISE

`exercise N` replaces each chNN region by `raise NotImplementedError(...)` at the same
indentation; `test N --workspace DIR` then runs the very tests the library passes against the
learner's copy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
CHAPTERS = ROOT / "chapters"
TESTS = ROOT / "tests"

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN EXERCISE (?P<ch>ch\d\d): (?P<what>.*)$")
END = re.compile(r"^\s*# END EXERCISE\s*$")


def chapters() -> dict[int, Path]:
    """Chapter number -> its folder (chapters/NN_slug)."""
    out = {}
    if CHAPTERS.is_dir():
        for d in sorted(CHAPTERS.iterdir()):
            m = re.match(r"(\d\d)_", d.name)
            if d.is_dir() and m:
                out[int(m.group(1))] = d
    return out


def _chapter(n: int) -> Path:
    chs = chapters()
    if n not in chs:
        have = ", ".join(str(k) for k in chs) or "none"
        raise SystemExit(f"no chapter {n}: chapters present are {have} (see `list`)")
    return chs[n]


def _title(folder: Path) -> str:
    readme = folder / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return folder.name


def cmd_list(_args) -> int:
    for n, folder in chapters().items():
        runnable = "" if (folder / "main.py").is_file() else "  (no main.py yet)"
        print(f"{n:2d}  {folder.name:<20} {_title(folder)}{runnable}")
    return 0


def cmd_run(args) -> int:
    main = _chapter(args.n) / "main.py"
    if not main.is_file():
        raise SystemExit(f"chapter {args.n} has no main.py at {main}")
    return subprocess.call([sys.executable, str(main), *args.rest], cwd=ROOT)


def cmd_test(args) -> int:
    _chapter(args.n)
    env = dict(os.environ)
    cwd = ROOT
    if args.workspace:
        ws = Path(args.workspace).resolve()
        if not (ws / "tinytorch" / "__init__.py").is_file():
            raise SystemExit(
                f"{ws} holds no tinytorch/ package: create it with "
                f"`python -m tinytorch.course exercise {args.n} --into {ws}`"
            )
        # run from the workspace so its tinytorch/ is the one imported
        env["PYTHONPATH"] = os.pathsep.join([str(ws), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        cwd = ws
        # the workspace copies the Python package only: its kernels build from our sources
        env.setdefault("TINYTORCH_KERNEL_SRC", str(ROOT / "kernels"))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(TESTS),
        "-m",
        f"ch{args.n:02d}",
        "-p",
        "no:cacheprovider",
        *args.rest,
    ]
    print("running:", " ".join(cmd), f"(in {cwd})")
    return subprocess.call(cmd, cwd=cwd, env=env)


def stub_exercises(source: str, chapter: str) -> tuple[str, int]:
    """Replace every `chapter` exercise region in `source` by a NotImplementedError stub."""
    out, count, lines, i = [], 0, source.splitlines(keepends=True), 0
    while i < len(lines):
        m = BEGIN.match(lines[i].rstrip("\n"))
        if not m or m.group("ch") != chapter:
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not END.match(lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"exercise region opened at line {i + 1} is never closed")
        what = m.group("what").strip().replace('"', "'")
        ind = m.group("indent")
        out.append(lines[i])
        out.append(f'{ind}raise NotImplementedError("exercise {chapter}: {what}")\n')
        out.append(lines[j])
        count += 1
        i = j + 1
    return "".join(out), count


def cmd_exercise(args) -> int:
    chapter = f"ch{args.n:02d}"
    _chapter(args.n)
    dest = Path(args.into).resolve() / "tinytorch"
    if dest.exists():
        raise SystemExit(
            f"{dest} already exists; choose an empty folder (your work is never overwritten)"
        )
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    total = 0
    for path in sorted(dest.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new, n = stub_exercises(text, chapter)
        if n:
            path.write_text(new, encoding="utf-8")
            print(f"  {path.relative_to(dest.parent)}: {n} exercise(s)")
            total += n
    print(
        f"wrote {dest} with {total} exercise(s) for chapter {args.n}; check your work with\n"
        f"  python -m tinytorch.course test {args.n} --workspace {dest.parent}"
    )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinytorch.course",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the chapters").set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="run chapter N's main.py")
    r.add_argument("n", type=int)
    r.add_argument("rest", nargs=argparse.REMAINDER)
    r.set_defaults(fn=cmd_run)
    t = sub.add_parser("test", help="run chapter N's tests (other args go to pytest)")
    t.add_argument("n", type=int)
    t.add_argument("--workspace", default=None)
    t.set_defaults(fn=cmd_test)
    e = sub.add_parser("exercise", help="write a copy with chapter N's exercises stubbed")
    e.add_argument("n", type=int)
    e.add_argument("--into", required=True)
    e.set_defaults(fn=cmd_exercise)
    args, extra = p.parse_known_args(argv)
    if args.cmd == "test":
        args.rest = extra
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
