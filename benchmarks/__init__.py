"""tinytorch against PyTorch, in the same process on the same inputs.

Run each from the repository root as a module, e.g. `python -m benchmarks.gpt_cpu`; the timer and
the result files come from `tinytorch.bench`, and every run writes benchmarks/results/NAME_DEVICE.md
and .json.
"""

import os

# Each library runs with its own OpenMP defaults. Importing tinytorch sets OMP_WAIT_POLICY=passive
# (tinytorch/__init__.py) and child processes inherit it (the suite, gpt_cpu's workers); PyTorch
# loads its own libgomp at `import torch`, which reads the variable then. So a setting that a
# parent's tinytorch made, not the user, is dropped here and torch is imported first; tinytorch,
# imported after, sets it again for its own kernels. See tinytorch.bench.import_torch.
if os.environ.get("TINYTORCH_OMP_WAIT_POLICY") == "1":
    os.environ.pop("OMP_WAIT_POLICY", None)
try:
    import torch  # noqa: F401
except ImportError:  # the benchmarks that need no PyTorch still run
    pass
