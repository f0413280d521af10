"""Writing a learner's workspace: a copy of the package (and kernels/) with exercises stubbed.

`add_chapter` never overwrites a learner's work. Into a new folder it copies the reference
package and kernel sources and stubs the chapter's regions; into an existing workspace it
copies only the files that are missing and stubs the chapter's regions inside the files that
are there, leaving alone every region that already holds a stub or that differs from the
reference (the learner has written it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .paths import read_record, write_record
from .regions import SUFFIXES, parse_regions, stub_exercises

_IGNORE = ("__pycache__", ".pyc", ".so", ".o")


class AlreadyThere(Exception):
    """The chapter's exercises were added to this workspace before."""


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part in _IGNORE for part in p.parts) and p.suffix not in _IGNORE
    )


def _stub_all(text: str, chapters: set[int]) -> tuple[str, int]:
    total = 0
    for n in sorted(chapters):
        text, k = stub_exercises(text, f"ch{n:02d}")
        total += k
    return text, total


def add_chapter(workspace: Path, n: int, root: Path) -> list[str]:
    """Put chapter n's exercises into `workspace` (created if needed); returns what was done."""
    chapter = f"ch{n:02d}"
    record = read_record(workspace)
    done = set(record.get("chapters", []))
    if n in done:
        raise AlreadyThere(
            f"chapter {n}'s exercises already exist in {workspace} (added earlier); nothing "
            f"changed, your work is kept"
        )
    want = done | {n}
    log, copied = [], 0
    for src_dir, name in ((root / "tinytorch", "tinytorch"), (root / "kernels", "kernels")):
        for src in _files(src_dir):
            rel = Path(name) / src.relative_to(src_dir)
            dest = workspace / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                copied += 1
                if src.suffix in SUFFIXES:
                    text, k = _stub_all(src.read_text(encoding="utf-8"), want)
                    dest.write_text(text, encoding="utf-8")
                    names = _names(parse_regions(text, dest), chapter)
                    if names:
                        log.append(f"  stubbed {rel}: {', '.join(names)}")
                else:
                    shutil.copy2(src, dest)
                continue
            if src.suffix not in SUFFIXES:
                continue
            log += _stub_existing(dest, src, rel, chapter)
    write_record(workspace, root, want)
    stubbed = sum(1 for line in log if line.startswith("  stubbed"))
    return [
        f"{workspace}: chapter {n}'s exercises stubbed in {stubbed} file(s); "
        f"{copied} file(s) copied from {root}",
        *log,
    ]


def _names(regions, chapter: str) -> list[str]:
    return sorted({r.name or r.what for r in regions if r.chapter == chapter})


def _stub_existing(dest: Path, src: Path, rel: Path, chapter: str) -> list[str]:
    """Stub `chapter`'s regions in the workspace file `dest`, keeping the learner's work."""
    text = dest.read_text(encoding="utf-8")
    mine = [r for r in parse_regions(text, dest) if r.chapter == chapter]
    if not mine:
        return []
    ref = [r for r in parse_regions(src.read_text(encoding="utf-8"), src) if r.chapter == chapter]
    log, keep = [], set()
    for k, r in enumerate(mine):
        label = r.name or r.what
        if r.stubbed:
            keep.add(k)
            log.append(f"  already stubbed, left as is: {label} ({rel}:{r.line})")
        elif k >= len(ref) or r.body != ref[k].body:
            keep.add(k)
            log.append(
                f"  kept your version (differs from the reference): {label} ({rel}:{r.line})"
            )
    new, count = stub_exercises(text, chapter, keep=lambda k: k in keep)
    if count:
        dest.write_text(new, encoding="utf-8")
        names = _names([r for k, r in enumerate(mine) if k not in keep], chapter)
        log.insert(0, f"  stubbed {rel}: {', '.join(names)}")
    return log
