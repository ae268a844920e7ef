"""Run compiled CUDA artifacts on NumPy inputs (needs an NVIDIA GPU and driver) and time them.

``gpu_available()`` is False without a working driver/GPU (and always once the stub driver was loaded for code
generation in this process). Kernels run with ``func(X, *constants, Y)`` on ``tvm.cuda(0)``; Relax executables
(or exported ``.so`` paths) run in the one VM runner (:class:`~sparseforge.codegen.vm.VMRunner`). Timings: median of repeats, each repeat a batch of
calls between two device synchronisations.
"""

from __future__ import annotations

import ctypes
import time
from typing import Callable, Sequence

import numpy as np

from .._tvm import tvm
from ..vm import VMRunner, load_library, to_numpy
from . import _driver
from .build import build


def gpu_available() -> bool:
    """True if a CUDA driver with at least one GPU is usable by this process."""
    if _driver.driver_kind() == "stub":
        return False
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except (OSError, AttributeError):
        return False


def require_gpu() -> None:
    if not gpu_available():
        raise RuntimeError("no CUDA GPU available: sparseforge.codegen.cuda.device needs an NVIDIA GPU, its "
                           "driver (libcuda.so.1) and TVM's CUDA runtime")


def cuda_device(index: int = 0):
    """``tvm.cuda(index)`` after making sure TVM's CUDA runtime is loaded (RuntimeError without a GPU)."""
    require_gpu()
    _driver.ensure_cuda_runtime()
    dev = tvm.cuda(index)
    if not dev.exist:
        raise RuntimeError(f"TVM sees no CUDA device {index}")
    return dev


def device_arch(index: int = 0) -> str:
    """Architecture of the GPU, e.g. "sm_90"."""
    return "sm_" + cuda_device(index).compute_version.replace(".", "")


def to_device(array: np.ndarray, dev):
    return tvm.runtime.tensor(np.ascontiguousarray(array), dev)


class KernelRunner:
    """Device tensors for one kernel: ``runner(x) -> y`` (NumPy in, NumPy out); ``runner.call()`` re-runs
    without copies (for timing)."""

    def __init__(self, lib, kernel, x: np.ndarray | None = None, dev=None):
        self.dev = dev or cuda_device()
        self.func = lib[kernel.name]
        x = np.zeros(kernel.in_shape, np.float32) if x is None else x
        self.x = to_device(np.asarray(x, np.float32), self.dev)
        self.consts = [to_device(c, self.dev) for c in kernel.constants]
        self.y = to_device(np.zeros(kernel.out_shape, kernel.out_dtype), self.dev)

    def __call__(self, x: np.ndarray | None = None) -> np.ndarray:
        if x is not None:
            self.x.copyfrom(np.ascontiguousarray(x, np.float32))
        self.call()
        self.dev.sync()
        return self.y.numpy()

    def call(self) -> None:
        self.func(self.x, *self.consts, self.y)


def run_kernel(kernel, x: np.ndarray, *, lib=None, arch: str | None = None) -> np.ndarray:
    """Compile ``kernel`` for this GPU (unless ``lib`` is given) and run it on ``x``."""
    lib = lib or build(kernel, arch or device_arch())
    return KernelRunner(lib, kernel)(x)


def load(path: str):
    """Load an exported library (``export``) for running."""
    _driver.ensure_cuda_runtime()
    return load_library(path)


class ModelRunner(VMRunner):
    """A Relax executable (or exported library path) in the VM on the GPU; waits for the device after a call."""

    def __init__(self, executable, func: str = "main", dev=None):
        dev = dev or cuda_device()
        super().__init__(load(executable) if isinstance(executable, str) else executable, dev, func=func)
        self.dev = dev

    def device_inputs(self, inputs: Sequence[np.ndarray]) -> list:
        return self.to_device(inputs)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        out = self.run_tensors(self.to_device(inputs))
        self.dev.sync()
        return to_numpy(out)


def run_model(executable, *inputs: np.ndarray, func: str = "main") -> list[np.ndarray]:
    return ModelRunner(executable, func)(*inputs)


def time_gpu(fn: Callable[[], object], sync: Callable[[], object], *, repeat: int = 30, warmup: int = 5,
             min_time: float = 2e-3) -> float:
    """Median seconds per ``fn()`` call. Each repeat runs ``fn`` ``inner`` times between two ``sync()`` calls;
    ``inner`` is chosen so a repeat lasts about ``min_time`` (launch overhead amortised, queue kept busy)."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, min(1000, int(min_time / one)))
    samples = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / inner)
    return float(np.median(samples))


__all__ = ["KernelRunner", "ModelRunner", "cuda_device", "device_arch", "gpu_available", "load", "require_gpu",
           "run_kernel", "run_model", "time_gpu", "to_device"]
