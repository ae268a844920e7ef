"""Compile and run kernels on the host: ``build``, ``run`` and ``measure`` (median wall time)."""

from __future__ import annotations

import os
import time
from typing import Iterable

import numpy as np

from .._tvm import IRModule, cpu_device, to_tvm_tensor, tvm
from ._common import SparseKernel, resolve_target


def ensure_thread_pool(threads: int) -> None:
    """Size TVM's CPU thread pool to ``threads`` unless TVM_NUM_THREADS is set.

    TVM's default pool uses half the logical CPUs on x86 (it assumes SMT): 1 thread on a 2-core machine. The
    variable is read when the pool starts (the first parallel kernel call), so this only helps before that."""
    os.environ.setdefault("TVM_NUM_THREADS", str(max(1, int(threads))))


def build(kernels: SparseKernel | Iterable[SparseKernel], target=None):
    """Compile one or more kernels into one host module (``tvm.compile``); index it by ``kernel.name``."""
    kernels = [kernels] if isinstance(kernels, SparseKernel) else list(kernels)
    tgt = resolve_target(target)
    ensure_thread_pool(tgt.threads)
    mod = IRModule({k.name: k.func for k in kernels})
    return tvm.compile(mod, target=tgt.tvm())


class Runner:
    """Device tensors for one kernel: ``runner(x) -> y`` (NumPy in, NumPy out), ``runner.call()`` re-runs."""

    def __init__(self, lib, kernel: SparseKernel, x: np.ndarray | None = None):
        dev = cpu_device()
        self.func = lib[kernel.name]
        x = np.zeros(kernel.in_shape, np.float32) if x is None else x
        self.x = to_tvm_tensor(np.ascontiguousarray(x, np.float32), dev)
        self.consts = [to_tvm_tensor(np.ascontiguousarray(c), dev) for c in kernel.constants]
        self.y = to_tvm_tensor(np.zeros(kernel.out_shape, kernel.out_dtype), dev)

    def __call__(self, x: np.ndarray | None = None) -> np.ndarray:
        if x is not None:
            self.x.copyfrom(np.ascontiguousarray(x, np.float32))
        self.call()
        return self.y.numpy()

    def call(self) -> None:
        self.func(self.x, *self.consts, self.y)


def run(kernel: SparseKernel, x: np.ndarray, target=None, lib=None) -> np.ndarray:
    """Compile (unless ``lib`` is given) and run ``kernel`` on ``x``."""
    return Runner(lib or build(kernel, target), kernel)(x)


def time_call(fn, repeat: int = 30, warmup: int = 3, min_time: float = 0.0, clock=time.perf_counter) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls (each timed call repeated until ``min_time`` elapsed).

    ``clock=time.thread_time`` measures CPU time of the calling thread instead of wall time: insensitive to
    preemption on a shared machine, meaningful only for single-threaded kernels (TVM_NUM_THREADS=1)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        n, t0 = 0, clock()
        while True:
            fn()
            n += 1
            dt = clock() - t0
            if dt >= min_time:
                break
        samples.append(dt / n)
    return float(np.median(samples))


def measure(kernel: SparseKernel, repeat: int = 30, *, target=None, lib=None, seed: int = 0) -> float:
    """Compile ``kernel`` for the host (or use ``lib``) and return the median seconds per call on random input."""
    x = np.random.default_rng(seed).standard_normal(kernel.in_shape).astype(np.float32)
    r = Runner(lib or build(kernel, target), kernel, x)
    return time_call(r.call, repeat=repeat, min_time=2e-4)
