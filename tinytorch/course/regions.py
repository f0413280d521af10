"""Exercise regions: find them in the library source, stub them, tell a stub from work.

A region, one style in Python and one in the C++/CUDA kernels:

    # BEGIN EXERCISE chNN: NAME - what to write        // BEGIN EXERCISE chNN: NAME - what
    ...the reference solution...                        ...the reference solution...
    # END EXERCISE                                      // END EXERCISE

NAME is lowercase snake_case, unique within the chapter (several regions may share a NAME
when they are one exercise). The stub that replaces the body is one statement at the region's
indentation, so the file still parses (compiles):

    raise NotImplementedError("exercise chNN: NAME - what to write")
    throw std::runtime_error("exercise chNN: NAME - what to write");
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BEGIN = re.compile(r"^(?P<indent>\s*)(?P<lead>#|//) BEGIN EXERCISE (?P<ch>ch\d\d): (?P<what>.*)$")
END = re.compile(r"^\s*(#|//) END EXERCISE\s*$")
NAMED = re.compile(r"^(?P<name>[a-z][a-z0-9_]*) - (?P<text>\S.*)$")
# the files regions may live in: the package's Python, the kernels' C++/CUDA sources
SUFFIXES = {".py": "#", ".cpp": "//", ".cu": "//", ".h": "//"}


@dataclass
class Region:
    """One exercise region of one file; `line` is the BEGIN line's number (1-based)."""

    path: Path
    line: int
    chapter: str  # "ch01"
    name: str | None  # None when the BEGIN line does not follow `NAME - what`
    what: str  # everything after "chNN: "
    body: list[str]  # the lines between BEGIN and END

    @property
    def stubbed(self) -> bool:
        """Whether the body is still the stub (the learner has not started it)."""
        code = [b.strip() for b in self.body if b.strip()]
        return len(code) == 1 and _is_stub(code[0], self.chapter)


def _is_stub(line: str, chapter: str) -> bool:
    return line.startswith(
        (
            f'raise NotImplementedError("exercise {chapter}:',
            f'throw std::runtime_error("exercise {chapter}:',
        )
    )


def stub_line(indent: str, lead: str, chapter: str, what: str) -> str:
    """The statement that replaces a region's body (Python raise or C++ throw)."""
    what = what.strip().replace("\\", "/").replace('"', "'")
    if lead == "//":
        return f'{indent}throw std::runtime_error("exercise {chapter}: {what}");\n'
    return f'{indent}raise NotImplementedError("exercise {chapter}: {what}")\n'


def _spans(lines: list[str]):
    """Yield (begin match, begin index, end index) for every region in `lines`."""
    i = 0
    while i < len(lines):
        m = BEGIN.match(lines[i].rstrip("\r\n"))
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not END.match(lines[j]):
            if BEGIN.match(lines[j].rstrip("\r\n")):
                raise ValueError(f"exercise region opened at line {i + 1} is never closed")
            j += 1
        if j == len(lines):
            raise ValueError(f"exercise region opened at line {i + 1} is never closed")
        yield m, i, j
        i = j + 1


def parse_regions(source: str, path: Path | str = "<source>") -> list[Region]:
    """Every exercise region of `source`, in order."""
    lines = source.splitlines(keepends=True)
    out = []
    for m, i, j in _spans(lines):
        named = NAMED.match(m.group("what").strip())
        out.append(
            Region(
                path=Path(path),
                line=i + 1,
                chapter=m.group("ch"),
                name=named.group("name") if named else None,
                what=m.group("what").strip(),
                body=[ln.rstrip("\r\n") for ln in lines[i + 1 : j]],
            )
        )
    return out


def stub_exercises(source: str, chapter: str, keep=lambda region_index: False) -> tuple[str, int]:
    """Replace every `chapter` region's body in `source` by its stub.

    Returns (new source, number of regions stubbed). `keep(k)`, called with the index of the
    chapter's k-th region in this file, returns True to leave that region as it is (a learner's
    work). A region already holding its stub is counted as stubbed and left unchanged.
    """
    lines = source.splitlines(keepends=True)
    out, count, pos, k = [], 0, 0, -1
    for m, i, j in _spans(lines):
        if m.group("ch") != chapter:
            continue
        k += 1
        if keep(k):
            continue
        out.extend(lines[pos : i + 1])
        out.append(stub_line(m.group("indent"), m.group("lead"), chapter, m.group("what")))
        pos = j
        count += 1
    out.extend(lines[pos:])
    return "".join(out), count


def source_files(package: Path, kernels: Path | None = None) -> list[Path]:
    """The files that may hold regions: package/**/*.py and kernels/*.{cpp,cu,h}, sorted."""
    files = [p for p in package.rglob("*.py") if "__pycache__" not in p.parts]
    if kernels is not None and kernels.is_dir():
        files += [p for p in kernels.iterdir() if p.suffix in SUFFIXES and p.suffix != ".py"]
    return sorted(files)


def regions_of(package: Path, kernels: Path | None = None, chapter: str | None = None):
    """Every region (of `chapter`, or all) under the package and kernel sources."""
    out = []
    for path in source_files(package, kernels):
        text = path.read_text(encoding="utf-8")
        if "BEGIN EXERCISE" in text:
            out += [r for r in parse_regions(text, path) if chapter in (None, r.chapter)]
    return out
