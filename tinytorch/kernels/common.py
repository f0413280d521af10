"""What the kernel families (layernorm, attention, gelu) share: the compiled module, the checks
every raw array passes before a kernel sees its address, and the output arrays.

One binding style: a family's Python code checks its arrays here, ONCE (type, dtype, shape,
C-contiguity, device, sizes, version), then passes raw addresses and sizes to the compiled
module (`ptr(a)`: host pointers for NumPy, device pointers for CuPy, plus CuPy's current stream
on the GPU). The C++ and CUDA bindings trust what they are given; they check nothing again.
"""

from __future__ import annotations

import numpy as np

from .. import backend

__all__ = [
    "lib",
    "runs_on",
    "cuda_fn",
    "ptr",
    "stream",
    "check_array",
    "one_device",
    "pick_version",
    "outputs",
]


_profiler = None  # the active tinytorch.profiler.profile, else None


def lib():
    """The compiled kernel module (built on first use; see tinytorch/kernels/build.py); while a
    tinytorch.profiler.profile is active, the module with each call recorded."""
    from . import build

    return build.load() if _profiler is None else _profiler.kernels(build.load())


def runs_on(device: str) -> bool:
    """Whether the kernel module builds here and was compiled for `device` ("cpu" always is,
    "cuda" only where nvcc and a GPU were found at build time)."""
    from . import available

    if not available():
        return False
    return device == "cpu" or bool(lib().with_cuda)


def cuda_fn(family: str, name: str):
    """The CUDA binding `name`, or a RuntimeError saying why the module has none."""
    fn = getattr(lib(), name, None)
    if fn is None:
        from . import build

        raise RuntimeError(
            f"{family}: the kernel module was built without CUDA ({name} is missing): "
            f"nvcc found: {build.find_nvcc() is not None}, GPU seen: {build.gpu_present()} "
            "(TINYTORCH_NO_CUDA may be set)"
        )
    return fn


def ptr(a) -> int:
    """The address of an array's first element (NumPy: host, CuPy: device); 0 for None."""
    if a is None:
        return 0
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def stream(xp) -> int:
    """CuPy's current stream as an integer (what the CUDA launchers take)."""
    return xp.cuda.get_current_stream().ptr


def check_array(a, name, where, shape=None, device=None, dtype=np.float32):
    """Refuse what a kernel cannot read: `a` must be a NumPy or CuPy array of `dtype`, of
    `shape` (when given), C-contiguous, on `device` (when given). `where` names the call in the
    message ("layernorm forward"). TypeError for the type and dtype, ValueError for the rest."""
    if not isinstance(a, backend.ARRAY_TYPES):
        raise TypeError(
            f"{where}: {name} must be a NumPy or CuPy array, got {type(a).__name__} "
            "(the Tensor-level functions take Tensors)"
        )
    # BEGIN EXERCISE ch11: input_checks - TypeError for the dtype, ValueError for shape, contiguity
    if a.dtype != dtype:
        raise TypeError(f"{where}: {name} must be {np.dtype(dtype).name}, got {a.dtype}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {tuple(a.shape)}; expected {tuple(shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(
            f"{where}: {name} must be C-contiguous (copy it with ascontiguousarray); "
            f"shape {tuple(a.shape)}, strides {a.strides}"
        )
    # END EXERCISE
    if device is not None and backend.device_of(a) != device:
        raise ValueError(f"{where}: {name} is on {backend.device_of(a)}, expected {device}")


def one_device(arrays, where) -> str:
    """The one device all `arrays` are on (ValueError when they are on several)."""
    devices = {backend.device_of(a) for a in arrays}
    if len(devices) != 1:
        raise ValueError(f"{where}: all arrays must be on one device, got {sorted(devices)}")
    return devices.pop()


def pick_version(version, device, versions: dict, default: dict, where) -> int:
    """`version`, or the device's default when None; ValueError when it does not exist there.
    versions and default map "cpu"/"cuda" to the numbered versions and the default one."""
    version = default[device] if version is None else version
    if version not in versions[device]:
        raise ValueError(
            f"{where}: version {version!r} does not exist on {device}; "
            f"expected one of {versions[device]}"
        )
    return version


def outputs(given, shapes, device, where):
    """Fresh float32 arrays of `shapes` on `device`, or `given` (arrays to write into) after
    checking each."""
    if given is None:
        xp = backend.get_xp(device)
        return [xp.empty(s, np.float32) for s in shapes]
    for i, (a, s) in enumerate(zip(given, shapes)):
        check_array(a, f"output {i}", where, s, device)
    return list(given)
