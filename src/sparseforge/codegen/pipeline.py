"""Compile a Relax module for a CPU target with sparseforge's schedules, and run the result.

Pipeline (:func:`relax_passes`): protect hand-scheduled kernels -> fold constants -> graph
clean-ups -> fast math -> lower matmuls to the packed dense kernel and convolutions to NCHWc
kernels -> legalize -> fold constants (this packs the weights once, at compile time) -> fuse ->
``ApplyDefaultSchedule(*default_rules(target))``; then ``tvm.compile``.

Prim_funcs whose attrs contain ``"tirx.is_scheduled": True`` (hand-written kernels called through
``relax.call_tir``) are never fused or rescheduled: they are marked ``op_pattern = kOpaque``
before fusion and dlight skips scheduled functions.

Threads (TVM 0.27 behaviour, measured): the runtime thread pool is sized once, when first used,
from ``TVM_NUM_THREADS`` (else ``OMP_NUM_THREADS``, else *half* the logical CPUs on x86, i.e. 1
on a 2-vCPU VM). The target's ``num-cores`` does not change it (MetaSchedule reads it for
tuning). ``runtime.config_threadpool`` can then shrink or regrow the pool up to that initial
size. This module therefore sets ``TVM_NUM_THREADS`` to the CPU count at import (unless the user
set it) and :func:`set_num_threads` resizes the pool. Import it before running any TVM kernel.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402

from . import _tvm  # noqa: E402
from .schedules import default_rules  # noqa: E402
from .schedules.relax_conv import ConvertConvToNCHWc  # noqa: E402
from .schedules.relax_fast_math import FastMath  # noqa: E402
from .schedules.relax_pack_dense import PackDenseWeights  # noqa: E402
from .schedules.relax_simplify import SimplifyGraph  # noqa: E402
from .target import CompileTarget, detect_x86  # noqa: E402

__all__ = [
    "CompiledModel",
    "ProtectScheduledKernels",
    "build",
    "import_onnx",
    "optimize",
    "relax_passes",
    "run",
    "set_num_threads",
]

relax = _tvm.relax
tvm = _tvm.tvm

_OPAQUE = 8  # relax OpPatternKind.kOpaque


@tvm.transform.module_pass(opt_level=0, name="ProtectScheduledKernels")
class ProtectScheduledKernels:
    """Mark prim_funcs with ``tirx.is_scheduled`` as opaque so FuseOps leaves their calls alone."""

    def transform_module(self, mod, _ctx):
        for gv, func in list(mod.functions_items()):
            if isinstance(func, _tvm.tirx.PrimFunc) and bool(func.attrs.get("tirx.is_scheduled", False)):
                mod[gv] = func.with_attr("op_pattern", _OPAQUE)
        return mod


def import_onnx(model, optimize_onnx: bool = True):
    """Relax ``IRModule`` from an ONNX model (``ModelProto``, ``onnx_ir.Model`` or path), weights as constants.

    ``optimize_onnx`` first runs ``onnxscript.optimizer.optimize`` (constant folding, BatchNorm
    into Conv, dead code), which the TVM importer benefits from.
    """
    import onnx
    import onnx_ir

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    if optimize_onnx:
        from onnxscript import optimizer

        ir_model = model if isinstance(model, onnx_ir.Model) else onnx_ir.from_proto(model)
        optimizer.optimize(ir_model)
        model = ir_model
    proto = onnx_ir.to_proto(model) if isinstance(model, onnx_ir.Model) else model
    return _tvm.onnx_frontend.from_onnx(proto, keep_params_in_input=False)


def relax_passes(target: CompileTarget) -> list:
    """The Relax passes :func:`optimize` runs, in order (scheduling included)."""
    t = relax.transform
    return [
        ProtectScheduledKernels(),
        t.DecomposeOpsForInference(),
        t.CanonicalizeBindings(),
        t.FoldConstant(),
        SimplifyGraph(),
        FastMath(),
        PackDenseWeights(target.vector_lanes, target.vector_registers),
        ConvertConvToNCHWc(target.vector_lanes, target.vector_registers),
        t.LegalizeOps(),
        t.AnnotateTIROpPattern(),
        t.FoldConstant(),
        t.FuseOps(),
        t.FuseTIR(),
        t.DeadCodeElimination(),
        _tvm.dlight.ApplyDefaultSchedule(*default_rules(target)),
    ]


def optimize(mod, target: CompileTarget | None = None):
    """Run :func:`relax_passes` on ``mod``; returns the fused, scheduled ``IRModule``."""
    target = target or detect_x86()
    with target.tvm_target():
        return tvm.transform.Sequential(relax_passes(target))(mod)


def build(mod, target: CompileTarget | None = None):
    """Compile a Relax ``IRModule`` for ``target`` (default: the host); returns the TVM executable."""
    target = target or detect_x86()
    scheduled = optimize(mod, target)
    return tvm.compile(scheduled, target=target.tvm_target())


def set_num_threads(n: int) -> int:
    """Resize TVM's CPU thread pool to ``n`` workers (at most ``TVM_NUM_THREADS``); returns the new size."""
    tvm.get_global_func("runtime.config_threadpool")(1, int(n))
    return int(tvm.runtime.num_threads())


class CompiledModel:
    """A loaded executable: call it with NumPy arrays, get NumPy arrays back.

    ``threads`` (``None`` = leave the pool as is) is applied before every call, since the TVM
    thread pool is process-wide.
    """

    def __init__(self, executable, threads: int | None = None, func: str = "main"):
        self.device = _tvm.cpu_device()
        self.vm = relax.VirtualMachine(executable, self.device)
        self.func = func
        self.threads = threads

    def to_device(self, arrays) -> list:
        return [_tvm.to_tvm_tensor(np.ascontiguousarray(a), self.device) for a in arrays]

    def run_tensors(self, tensors):
        """Run on already-converted TVM tensors; returns the raw VM result."""
        if self.threads is not None:
            set_num_threads(self.threads)
        return self.vm[self.func](*tensors)

    def __call__(self, *arrays) -> list[np.ndarray]:
        return _to_numpy(self.run_tensors(self.to_device(arrays)))

    def profile(self, *arrays, repeats: int = 3) -> dict[str, float]:
        """Seconds spent per kernel (prim_func name), summed over calls, median over ``repeats`` runs.

        Uses a VM instrument (TVM 0.27's ``VirtualMachine`` has no ``profile=True``); timings of
        ``vm.builtin.*`` calls (allocation, reshape views) are reported under their own names.
        """
        tensors = self.to_device(arrays)
        runs = []
        for _ in range(repeats):
            totals: dict[str, float] = defaultdict(float)
            starts: dict[str, float] = {}

            def instrument(func, name, before_run, ret_value, *args):
                if before_run:
                    starts[name] = time.perf_counter()
                else:
                    totals[name] += time.perf_counter() - starts.pop(name, time.perf_counter())

            self.vm.set_instrument(instrument)
            try:
                self.run_tensors(tensors)
            finally:
                self.vm.set_instrument(None)
            runs.append(totals)
        names = set().union(*runs)
        return {n: float(np.median([r.get(n, 0.0) for r in runs])) for n in names}


def run(executable, inputs, threads: int | None = None) -> list[np.ndarray]:
    """Run ``main`` of a compiled module once on NumPy ``inputs`` with ``threads`` workers."""
    return CompiledModel(executable, threads)(*inputs)


def _to_numpy(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [r for item in result for r in _to_numpy(item)]
