"""The learner's entry point: `python -m tinytorch.course` (see `cli.USAGE`).

Exercise regions are marked in the library source, one style everywhere (regions.py):

    # BEGIN EXERCISE chNN: NAME - what to write
    ...the reference solution...
    # END EXERCISE

`exercise N --into DIR` writes a workspace: the package and kernels/ with chapter N's
regions replaced by `raise NotImplementedError("exercise chNN: NAME - what to write")`;
`test N --workspace DIR` runs the very tests the library passes against the learner's copy,
taking chapters and tests from the repository and the code under test from DIR/tinytorch.
"""

from .cli import USAGE, course_env, exercises, main
from .lesson import exercise_order
from .paths import PACKAGE, ROOT, chapters, course_root
from .regions import BEGIN, END, Region, parse_regions, regions_of, stub_exercises

__all__ = [
    "BEGIN",
    "END",
    "PACKAGE",
    "ROOT",
    "USAGE",
    "Region",
    "chapters",
    "course_env",
    "course_root",
    "exercise_order",
    "exercises",
    "main",
    "parse_regions",
    "regions_of",
    "stub_exercises",
]
