"""Suite-wide conventions (see DESIGN.md, "Tests").

- One device parametrization: a test that takes the `device` fixture runs on "cpu", and on
  "cuda" when a GPU and CuPy are present (marked `cuda`, skipped with the reason otherwise).
- Every test carries a chapter marker `ch01`..`ch12`; collection fails if one does not, so
  `pytest -m chNN` (and `python -m tinytorch.course test N`) never misses a test.
- Helpers (`assert_close` with the per-dtype tolerances, `to_numpy`) live in tests/helpers.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tinytorch import backend

CHAPTER = re.compile(r"ch\d\d$")
_HERE = Path(__file__).resolve().parent

# The course data lives outside the repository (never committed); CI points here too.
os.environ.setdefault("TINYTORCH_DATA_DIR", str(_HERE.parent.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    missing = [
        it.nodeid for it in items if not any(CHAPTER.match(m.name) for m in it.iter_markers())
    ]
    if missing:
        raise pytest.UsageError(
            "every test needs a chapter marker (ch01..ch12); missing on:\n  " + "\n  ".join(missing)
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
