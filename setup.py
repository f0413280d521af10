"""tinytorch: a deep-learning framework and course, built from scratch on NumPy and CuPy.

`pip install -e .` installs the library; extras:
  test   the test oracles (pytest, hypothesis, torch==2.13.0 CPU, tiktoken, scikit-learn,
         sacrebleu), the optional extras (tensorboardX, optuna), the kernel build tools
  cuda   the GPU backend (cupy-cuda13x) and the kernel build tools (pybind11, ninja)
  bench  plotting and the reference tokenizer trainer used by the benchmarks
  log    TensorBoard event files from the Trainer (tensorboardX)
  search Optuna under tinytorch.train.optuna_search
  pretrained  the Hugging Face hub client, for from_pretrained("gpt2") and friends by name

`python setup.py build_kernels` prebuilds the compiled kernels into the cache (optional: they
are otherwise built on first use).
"""

from setuptools import Command, find_packages, setup


class BuildKernels(Command):
    description = "prebuild the pybind11 kernel module (CPU, and CUDA when nvcc is present)"
    user_options = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        from tinytorch.kernels.build import load

        mod = load(verbose=True)
        print(f"built {mod.__file__}")


KERNEL_TOOLS = ["pybind11>=2.11", "ninja>=1.11"]

setup(
    name="tinytorch",
    version="0.1.0",
    description="A deep-learning framework and course built from scratch on NumPy and CuPy",
    packages=find_packages(include=["tinytorch", "tinytorch.*"]),
    python_requires=">=3.10",
    # pybind11 and ninja build the C++ (CPU) kernels on first use; without a C++ compiler
    # the library falls back to the composed NumPy ops
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "regex>=2023.0",
        "matplotlib>=3.7",
        # tinytorch.save/load (no pickle), the Trainer's progress bar
        "safetensors>=0.4",
        "tqdm>=4.60",
        *KERNEL_TOOLS,
    ],
    extras_require={
        "test": [
            "pytest>=7.4",
            "hypothesis>=6.80",
            "torch==2.13.0",
            "tiktoken>=0.7",
            "ruff>=0.5",
            "tokenizers>=0.15",
            # oracles for tinytorch.metrics (chapter 08), and the optional extras' tests
            "scikit-learn>=1.3",
            "sacrebleu>=2.3",
            "tensorboardX>=2.6",
            "optuna>=3.5",
            # oracle for chapter 09's BERT / GPT-2 weights (tiny random models, no network)
            "transformers>=5.0",
            *KERNEL_TOOLS,
        ],
        # TensorBoard event files from the Trainer (tinytorch.train.RunLogger)
        "log": ["tensorboardX>=2.6"],
        # tinytorch.train.optuna_search
        "search": ["optuna>=3.5"],
        # from_pretrained("gpt2") / ("bert-base-uncased"): download from the Hugging Face hub
        "pretrained": ["huggingface_hub>=0.20"],
        "cuda": ["cupy-cuda13x>=13.0", *KERNEL_TOOLS],
        "bench": ["matplotlib>=3.7", "tokenizers>=0.15", "tiktoken>=0.7"],
    },
    cmdclass={"build_kernels": BuildKernels},
)
