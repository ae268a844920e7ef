"""Compile a Relax module for a CPU target with sparseforge's schedules, and run the result.

Pipeline (:func:`relax_passes`): protect hand-scheduled kernels -> fold constants -> graph
clean-ups -> lower matmuls to the packed dense kernel and convolutions to NCHWc kernels -> fast
math -> legalize -> fold constants (this packs the weights once, at compile time) -> fuse ->
``ApplyDefaultSchedule(*default_rules(target))``; then ``tvm.compile``.

Prim_funcs whose attrs contain ``"tirx.is_scheduled": True`` (hand-written kernels called through
``relax.call_tir``) are never fused or rescheduled: they are marked ``op_pattern = kOpaque`` for
fusion, restored unchanged afterwards, and dlight skips scheduled functions.

Threads (TVM 0.27 behaviour, measured): the runtime thread pool is sized once, when first used,
from ``TVM_NUM_THREADS`` (else ``OMP_NUM_THREADS``, else *half* the logical CPUs on x86, i.e. 1
on a 2-vCPU VM). The target's ``num-cores`` does not change it (MetaSchedule reads it for
tuning). ``runtime.config_threadpool`` can then shrink or regrow the pool up to that initial
size. This module therefore sets ``TVM_NUM_THREADS`` to the CPU count at import (unless the user
set it) and :func:`set_num_threads` resizes the pool. Import it before running any TVM kernel.
After a parallel kernel the workers spin for a while (``TVM_THREAD_POOL_SPIN_COUNT``), as ORT's
and OpenMP's do: on a 2-core machine, leave a pause before timing another runtime.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass

os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402

from . import _tvm  # noqa: E402
from .schedules import default_rules  # noqa: E402
from .schedules._contract import is_hand_scheduled  # noqa: E402
from .schedules.relax_conv import ConvertConvToNCHWc  # noqa: E402
from .schedules.relax_fast_math import FastMath  # noqa: E402
from .schedules.relax_pack_dense import PackDenseWeights  # noqa: E402
from .schedules.relax_simplify import SimplifyGraph  # noqa: E402
from .target import CompileTarget, detect_x86  # noqa: E402

__all__ = [
    "CompiledModel",
    "KernelTime",
    "ProtectScheduledKernels",
    "apply_schedules",
    "build",
    "compile_module",
    "default_database_dir",
    "import_onnx",
    "optimize",
    "relax_passes",
    "run",
    "set_num_threads",
    "tune",
    "tune_and_build",
]

relax = _tvm.relax
tvm = _tvm.tvm

_OPAQUE = 8  # relax OpPatternKind.kOpaque


def _is_hand_scheduled(func) -> bool:
    return isinstance(func, _tvm.tirx.PrimFunc) and is_hand_scheduled(func)


class ProtectScheduledKernels:
    """Keep hand-scheduled prim_funcs (``tirx.is_scheduled``) out of fusion, then restore them.

    ``protect()`` marks them ``op_pattern = kOpaque`` (FuseOps never fuses an opaque call and
    AnnotateTIROpPattern keeps an existing pattern); ``restore()`` puts the original functions
    back, so they leave the pipeline exactly as they entered it.
    """

    def __init__(self):
        self.originals: dict[str, object] = {}

    def protect(self):
        @tvm.transform.module_pass(opt_level=0, name="ProtectScheduledKernels")
        def _protect(mod, _ctx):
            for gv, func in list(mod.functions_items()):
                if _is_hand_scheduled(func):
                    self.originals[gv.name_hint] = func
                    mod[gv] = func.with_attr("op_pattern", _OPAQUE)
            return mod

        return _protect

    def restore(self):
        @tvm.transform.module_pass(opt_level=0, name="RestoreScheduledKernels")
        def _restore(mod, _ctx):
            for gv, func in list(mod.functions_items()):
                if gv.name_hint in self.originals and isinstance(func, _tvm.tirx.PrimFunc):
                    mod[gv] = self.originals[gv.name_hint]
            return mod

        return _restore


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


def relax_passes(target: CompileTarget, schedule: bool = True, database_dir: str | None = None) -> list:
    """The Relax passes :func:`optimize` runs, in order.

    ``schedule``: end with the schedule rules; ``database_dir``: first apply the MetaSchedule
    records tuned by :func:`tune` (those functions are then left alone by the rules).
    """
    t = relax.transform
    guard = ProtectScheduledKernels()
    passes = [
        guard.protect(),
        t.DecomposeOpsForInference(),
        t.CanonicalizeBindings(),
        t.FoldConstant(),
        SimplifyGraph(),
        PackDenseWeights(target.vector_lanes, target.vector_registers),
        ConvertConvToNCHWc(target.vector_lanes, target.vector_registers),
        FastMath(),
        t.LegalizeOps(),
        t.AnnotateTIROpPattern(),
        t.FoldConstant(),
        t.FuseOps(),
        t.FuseTIR(),
        t.DeadCodeElimination(),
        guard.restore(),
    ]
    if schedule:
        if database_dir is not None:
            passes.append(relax.transform.MetaScheduleApplyDatabase(os.fspath(database_dir)))
        passes.append(_tvm.dlight.ApplyDefaultSchedule(*default_rules(target)))
    return passes


def optimize(mod, target: CompileTarget | None = None, schedule: bool = True, database_dir: str | None = None):
    """Run :func:`relax_passes` on ``mod``; returns the fused (and scheduled) ``IRModule``."""
    target = target or detect_x86()
    with target.tvm_target():
        return tvm.transform.Sequential(relax_passes(target, schedule, database_dir))(mod)


def apply_schedules(mod, target: CompileTarget):
    """Schedule every not-yet-scheduled PrimFunc of a fused module with ``default_rules(target)``."""
    with target.tvm_target():
        return _tvm.dlight.ApplyDefaultSchedule(*default_rules(target))(mod)


def compile_module(mod, target: CompileTarget):
    """``tvm.compile`` a scheduled module (the output of :func:`optimize`) for ``target``."""
    return tvm.compile(mod, target=target.tvm_target())


def build(mod, target: CompileTarget | None = None, database_dir: str | None = None):
    """Compile a Relax ``IRModule`` for ``target`` (default: the host); returns the TVM executable.

    ``database_dir``: a MetaSchedule JSON database written by :func:`tune` for this model and
    target; the tuned functions use their tuned schedules, the rest the default rules.
    """
    target = target or detect_x86()
    return compile_module(optimize(mod, target, database_dir=database_dir), target)


def tune(mod, target: CompileTarget | None = None, trials: int = 64, database_dir: str = "tuning_db",
         only_fallback: bool = True) -> list[str]:
    """Tune prim_funcs with MetaSchedule into a persistent JSON database under ``database_dir``.

    By default only the functions no specialised rule handles (those the ``Fallback`` rule would
    get) are tuned: the dense/conv rules already run at 150-220 GFLOP/s per Zen 5 core, which
    MetaSchedule does not approach within a practical trial budget on a few cores. The first call
    in a process costs ~20 s extra (MetaSchedule parses TVM's tensor-intrinsic library). Records accumulate across
    calls; pass the same ``database_dir`` to :func:`build`. Returns the tuned function names.
    """
    from .schedules import explain

    target = target or detect_x86()
    fused = optimize(mod, target, schedule=False)
    picked = explain(fused, target)
    names = sorted(n for n, rule in picked.items() if not only_fallback or rule in ("Fallback", ""))
    if not names:
        return []
    os.makedirs(database_dir, exist_ok=True)
    ms = _tvm.s_tir.meta_schedule
    tasks = [t for t in ms.relax_integration.extract_tasks(fused, target.tvm_target())
             if t.task_name in names]
    # psutil, cloudpickle and xgboost are not dependencies: thread counts are given explicitly,
    # candidates are built and timed in this process, and the cost model falls back to random.
    from .schedules.tuning import InProcessBuilder, InProcessRunner

    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, os.fspath(database_dir), num_threads=os.cpu_count() or 1)
    ms.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=os.fspath(database_dir), max_trials_global=trials,
        num_trials_per_iter=min(64, max(1, trials)), builder=InProcessBuilder(), runner=InProcessRunner(),
        database="json", cost_model="xgb" if _has_module("xgboost") else "random",
    )
    return names


def default_database_dir(target: CompileTarget) -> str:
    """Per-CPU MetaSchedule database location: ``$SPARSEFORGE_CACHE`` (default ``~/.cache/sparseforge``)."""
    root = os.environ.get("SPARSEFORGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sparseforge")
    return os.path.join(root, "metaschedule", f"{target.kind}-{target.mcpu}-{target.vector_lanes}lanes")


def tune_and_build(mod, target: CompileTarget | None = None, trials: int = 64, database_dir: str | None = None):
    """:func:`tune` then :func:`build` with the same database (default: :func:`default_database_dir`)."""
    target = target or detect_x86()
    database_dir = database_dir or default_database_dir(target)
    tune(mod, target, trials=trials, database_dir=database_dir)
    return build(mod, target, database_dir=database_dir if os.path.isdir(database_dir) else None)


def set_num_threads(n: int) -> int:
    """Resize TVM's CPU thread pool to ``n`` workers (at most ``TVM_NUM_THREADS``); returns the new size."""
    if int(tvm.runtime.num_threads()) != int(n):
        tvm.get_global_func("runtime.config_threadpool")(1, int(n))  # mode 1: "big" cores
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

    def profile(self, *arrays, repeats: int = 3) -> dict[str, KernelTime]:
        """Time per kernel (prim_func or VM builtin name), summed over its calls in one inference.

        Median over ``repeats`` inferences. Uses a VM instrument (TVM 0.27's ``VirtualMachine``
        has no ``profile=True``), so each call also pays a Python callback (~1-2 us).
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
        return {
            n: KernelTime(float(np.median([t.get(n, 0.0) for t, _ in runs])), runs[0][1].get(n, 0))
            for n in names
        }


@dataclass(frozen=True)
class KernelTime:
    """Seconds one inference spends in a kernel (all its calls) and how many calls that was."""

    seconds: float
    calls: int


def run(executable, inputs, threads: int | None = None) -> list[np.ndarray]:
    """Run ``main`` of a compiled module once on NumPy ``inputs`` with ``threads`` workers."""
    return CompiledModel(executable, threads)(*inputs)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _to_numpy(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [r for item in result for r in _to_numpy(item)]
