"""tinytorch.memory: freed host memory is kept for reuse, so repeated temporaries of the same
sizes (a training step's) stop page-faulting; TINYTORCH_KEEP_FREED_MEMORY=0 leaves malloc as is."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.ch01,
    pytest.mark.skipif(
        platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
        reason="the malloc settings are glibc's",
    ),
]

PROBE = """
import numpy as np
import tinytorch
from tinytorch.memory import KEPT, page_faults
rng = np.random.default_rng()
xs = [rng.standard_normal(n).astype(np.float32) for n in (393216, 98304, 1 << 20)]
def work():  # temporaries of 0.4 to 4 MB, freed at once, as in a training step
    for x in xs:
        y = x * x
        z = y + x
        w = np.exp(z * 0.0)
        del y, z, w
for _ in range(3):
    work()
f0 = page_faults()
for _ in range(20):
    work()
print(KEPT, (page_faults() - f0) / 20)
"""


def _probe(**env):
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] == "True", float(out[1])


def test_freed_memory_is_reused():
    kept, faults = _probe()
    assert kept, "tinytorch did not set glibc's malloc thresholds at import"
    # 3 arrays of 0.4-4 MB a round: on fresh pages that would be over 1,000 faults a round
    assert faults < 20, f"{faults} page faults per round: freed memory was not reused"


def test_opt_out_leaves_malloc_alone():
    kept, _ = _probe(TINYTORCH_KEEP_FREED_MEMORY="0")
    assert not kept
