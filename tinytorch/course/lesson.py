"""The exercise order a lesson gives: the numbered list under `## Exercises`.

chapters/NN_slug/README.md has a section

    ## Exercises

    1. `unbroadcast` ([tinytorch/autograd.py](../../tinytorch/autograd.py)): ...
    2. `topological_order` (...): ...

whose items start with the exercise NAME in backticks. This module has no imports from the
package, so tests/conftest.py loads the repository's copy by path even when the package under
test is a learner's workspace.
"""

from __future__ import annotations

import re
from pathlib import Path

SECTION = re.compile(r"^##\s+(?:\d+\.\s*)?Exercises\s*$")
NEXT_SECTION = re.compile(r"^#{1,2}\s")  # a heading of the same or a higher level
ITEM = re.compile(r"^\d+\.\s+\**`(?P<name>[a-z][a-z0-9_]*)`")
CHAPTER_DIR = re.compile(r"^(?P<n>\d\d)_")


def exercise_order(readme: Path) -> list[str]:
    """The exercise names of a lesson's `## Exercises` list, in order ([] if none)."""
    if not readme.is_file():
        return []
    names, inside = [], False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if SECTION.match(line):
            inside = True
        elif inside and NEXT_SECTION.match(line):
            break
        elif inside and (m := ITEM.match(line)) and m.group("name") not in names:
            names.append(m.group("name"))
    return names


def chapter_dirs(root: Path) -> dict[int, Path]:
    """Chapter number -> its folder root/chapters/NN_slug."""
    out = {}
    chapters = root / "chapters"
    if chapters.is_dir():
        for d in sorted(chapters.iterdir()):
            m = CHAPTER_DIR.match(d.name)
            if d.is_dir() and m:
                out[int(m.group("n"))] = d
    return out


def lesson_orders(root: Path) -> dict[str, list[str]]:
    """ "chNN" -> that chapter's exercise names in lesson order, for every chapter folder."""
    return {f"ch{n:02d}": exercise_order(d / "README.md") for n, d in chapter_dirs(root).items()}
