"""Where things are: the repository (chapters, tests, the reference package) and workspaces.

The repository root is, in this order: $TINYTORCH_COURSE_ROOT (set by every `course`
command for the processes it starts), the folder above this package when it holds chapters/,
or the root recorded in the workspace this package was copied into (so `python -m
tinytorch.course` works from inside a workspace too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .lesson import chapter_dirs

PACKAGE = Path(__file__).resolve().parents[1]  # the tinytorch package this module belongs to
RECORD = ".tinytorch-course.json"  # a workspace's record: {"root": ..., "chapters": [...]}
ROOT_ENV = "TINYTORCH_COURSE_ROOT"


def read_record(workspace: Path) -> dict:
    """The workspace's record ({} if it has none)."""
    path = workspace / RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_record(workspace: Path, root: Path, chapters: set[int]) -> None:
    rec = {"root": str(root), "chapters": sorted(chapters)}
    tmp = workspace / (RECORD + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    tmp.replace(workspace / RECORD)


def course_root() -> Path:
    """The repository root: chapters/, tests/, the reference tinytorch/ and kernels/."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).resolve()
    if (PACKAGE.parent / "chapters").is_dir():
        return PACKAGE.parent
    recorded = read_record(PACKAGE.parent).get("root")
    return Path(recorded) if recorded else PACKAGE.parent


def home_workspace() -> Path | None:
    """The workspace this package was copied into, when it runs from one (else None)."""
    return PACKAGE.parent if (PACKAGE.parent / RECORD).is_file() else None


ROOT = course_root()


def chapters(root: Path | None = None) -> dict[int, Path]:
    """Chapter number -> its folder (chapters/NN_slug) in the repository."""
    return chapter_dirs(root if root is not None else course_root())


def title(folder: Path) -> str:
    """The lesson's title without its "Chapter NN:" prefix (the folder name if none)."""
    readme = folder / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                text = line[2:].strip()
                head, sep, rest = text.partition(":")
                return rest.strip() if sep and head.lower().startswith("chapter") else text
    return folder.name
