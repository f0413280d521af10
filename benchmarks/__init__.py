"""tinytorch against PyTorch, in the same process on the same inputs.

Run each from the repository root as a module, e.g. `python -m benchmarks.gpt_cpu`; the timer and
the result files come from `tinytorch.bench`, and every run writes benchmarks/results/NAME_DEVICE.md
and .json.
"""
