"""The one Relax VM runner: an executable (or a library on disk) in a ``relax.VirtualMachine``, NumPy in and out.

Used by everything that runs compiled code in this process: loaded artifacts (``runtime``), the AOT tracer of the
WebAssembly build, the calibration timer, ``bench``, remote (RPC) sessions and the GPU. Results are flattened
to a list of arrays in output order (:func:`to_numpy`).

Threads (TVM 0.27 behaviour, measured): the runtime thread pool is sized once, when first used, from
``TVM_NUM_THREADS`` (else ``OMP_NUM_THREADS``, else *half* the logical CPUs on x86, i.e. 1 on a 2-vCPU VM).
``runtime.config_threadpool`` can then shrink or regrow it up to that size. Importing this module therefore sets
``TVM_NUM_THREADS`` to the CPU count (unless the user set it), and :func:`set_num_threads` resizes the pool; the
pool is process-wide, so a runner with ``threads`` applies it before every call. After a parallel kernel the
workers spin for a while (``TVM_THREAD_POOL_SPIN_COUNT``): on a 2-core machine leave a pause before timing another
runtime.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402

from . import _tvm  # noqa: E402


def load_library(path: str | os.PathLike):
    """Load a compiled library from ``path`` as it is on disk now.

    ``dlopen`` returns the already loaded library for a path it has seen in this process, so a library rewritten
    at the same path (a recompile into the same artifact folder) would silently run the old code. Each load goes
    through a fresh copy with a unique name; the copy is removed once loaded (the mapping stays valid)."""
    source = Path(path)
    with tempfile.TemporaryDirectory(prefix="sparseforge-lib-") as tmp:
        copy = Path(tmp) / f"{uuid.uuid4().hex}{source.suffix or '.so'}"
        shutil.copyfile(source, copy)
        return _tvm.tvm.runtime.load_module(os.fspath(copy))


def set_num_threads(n: int) -> int:
    """Resize TVM's CPU thread pool to ``n`` workers (at most ``TVM_NUM_THREADS``); returns the new size."""
    tvm = _tvm.tvm
    if int(tvm.runtime.num_threads()) != int(n):
        tvm.get_global_func("runtime.config_threadpool")(1, int(n))  # mode 1: "big" cores
    return int(tvm.runtime.num_threads())


#: Registry functions a Relax VM executable may call that TVM's runtime-only library (what a device loads) has.
RUNTIME_FUNCTION_PREFIXES = ("vm.builtin.", "runtime.")


def registry_functions(executable) -> set[str]:
    """Global registry functions ``executable`` calls (``relax.run.nonzero``, ``tvm.contrib.sort.topk``, ...):
    packed functions with a dotted name (the model's own kernels are plain identifiers) that are not VM builtins.
    They live in TVM's compiler library, so a device with the runtime alone cannot run them."""
    names = re.findall(r"^@([^\s]+) packed_func;", executable.as_text(), flags=re.MULTILINE)
    return {n for n in names if "." in n and not n.startswith(RUNTIME_FUNCTION_PREFIXES)}


def flatten(result: Any) -> list:
    """A VM result (tensor or nested tuple of tensors) as a flat list of tensors, in output order."""
    if hasattr(result, "numpy"):
        return [result]
    return [t for item in result for t in flatten(item)]


def to_numpy(result: Any) -> list[np.ndarray]:
    """A VM result as a flat list of NumPy arrays, in output order."""
    return [t.numpy() for t in flatten(result)]


@dataclass(frozen=True)
class KernelTime:
    """Seconds one inference spends in a kernel (all its calls) and how many calls that was."""

    seconds: float
    calls: int


class VMRunner:
    """Run ``func`` (default ``main``) of a Relax executable on ``device`` (default: this CPU).

    ``module``: an executable from ``tvm.compile``/``relax.build``, a loaded runtime module (e.g. over RPC), or a
    path to a shared library. ``threads`` (None: leave the pool as it is) is applied before every call.
    """

    def __init__(self, module: Any, device: Any = None, *, threads: int | None = None, func: str = "main"):
        if isinstance(module, (str, os.PathLike)):
            module = load_library(module)
        self.device = device if device is not None else _tvm.cpu_device()
        self.vm = _tvm.relax.VirtualMachine(module, self.device)
        self.func = func
        self.threads = threads

    def to_device(self, arrays: Sequence[np.ndarray]) -> list:
        """Copies of ``arrays`` on the device; 0-d arrays stay 0-d (``np.ascontiguousarray`` would make them 1-d)."""
        return [_tvm.tvm.runtime.tensor(np.require(np.asarray(a), requirements="C"), self.device) for a in arrays]

    def run_tensors(self, tensors: Sequence[Any]) -> Any:
        """Run on tensors already on the device; returns the raw VM result."""
        if self.threads is not None:
            set_num_threads(self.threads)
        return self.vm[self.func](*tensors)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return to_numpy(self.run_tensors(self.to_device(arrays)))

    def bound(self, arrays: Sequence[np.ndarray]):
        """A no-argument callable running the function on ``arrays`` copied to the device once (for timing).

        The thread pool is sized once here, not per call, so the resize is not timed."""
        tensors = self.to_device(arrays)
        fn = self.vm[self.func]
        if self.threads is not None:
            set_num_threads(self.threads)
        return lambda: fn(*tensors)

    def time_evaluator(self, arrays: Sequence[np.ndarray], *, number: int, repeat: int) -> list[float]:
        """Seconds per run measured by TVM on the device (works over RPC): one value per repeat."""
        timer = self.vm.time_evaluator(self.func, self.device, number=number, repeat=repeat)
        return [float(r) for r in timer(*self.to_device(arrays)).results]

    def instrumented(self, tensors: Sequence[Any], callback) -> Any:
        """Run once on device tensors with a VM instrument ``callback(func, name, before_run, ret_value, *args)``
        called around every VM call; returns the raw result."""
        self.vm.set_instrument(callback)
        try:
            return self.run_tensors(tensors)
        finally:
            self.vm.set_instrument(None)

    def profile(self, *arrays: np.ndarray, repeats: int = 3) -> dict[str, KernelTime]:
        """Time per kernel (prim_func or VM builtin name), summed over its calls in one inference.

        Median over ``repeats`` inferences. Uses a VM instrument (TVM 0.27's ``VirtualMachine`` has no
        ``profile=True``), so each call also pays a Python callback (~1-2 us).
        """
        tensors = self.to_device(arrays)
        runs = []
        for _ in range(repeats):
            totals: dict[str, float] = defaultdict(float)
            calls: dict[str, int] = defaultdict(int)
            starts: dict[str, float] = {}

            def instrument(func, name, before_run, ret_value, *args):
                if before_run:
                    starts[name] = time.perf_counter()
                else:
                    totals[name] += time.perf_counter() - starts.pop(name, time.perf_counter())
                    calls[name] += 1

            self.vm.set_instrument(instrument)
            try:
                self.run_tensors(tensors)
            finally:
                self.vm.set_instrument(None)
            runs.append((totals, calls))
        names = set().union(*(t for t, _ in runs))
        return {n: KernelTime(float(np.median([t.get(n, 0.0) for t, _ in runs])), runs[0][1].get(n, 0))
                for n in names}


def run(executable: Any, inputs: Sequence[np.ndarray], threads: int | None = None) -> list[np.ndarray]:
    """Run ``main`` of a compiled module once on NumPy ``inputs`` with ``threads`` workers."""
    return VMRunner(executable, threads=threads)(*inputs)
