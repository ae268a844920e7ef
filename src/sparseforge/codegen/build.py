"""Build a Relax module for a CPU target with sparseforge's schedules (``tvm.compile``).

Pipeline (:func:`relax_passes`): protect hand-scheduled kernels -> fold constants -> graph
clean-ups -> lower matmuls to the packed dense kernel and convolutions to NCHWc kernels -> fast
math -> legalize (with :data:`~.legalize.LEGALIZE_MAP`) -> fold constants (this packs the weights once, at compile time) -> fuse ->
``ApplyDefaultSchedule(*default_rules(target))``; then ``tvm.compile``.

Prim_funcs whose attrs contain ``"tirx.is_scheduled": True`` (hand-written kernels called through
``relax.call_tir``) are never fused or rescheduled: they are marked ``op_pattern = kOpaque`` for
fusion, restored unchanged afterwards, and dlight skips scheduled functions.

Threads: see :mod:`sparseforge.codegen.vm` (the runtime pool is sized from ``TVM_NUM_THREADS``, which that
module sets before TVM starts; the target's ``num-cores`` only informs MetaSchedule).
"""

from __future__ import annotations

import importlib.util
import os

import onnx
import onnx_ir
from onnxscript import optimizer

from . import _tvm, vm  # noqa: F401  (vm sets TVM_NUM_THREADS before TVM's pool starts)
from .cpu_target import CompileTarget, detect_x86
from .legalize import LEGALIZE_MAP
from .schedules import default_rules, explain
from .schedules._contract import is_hand_scheduled
from .schedules.relax_conv import ConvertConvToNCHWc
from .schedules.relax_fast_math import FastMath
from .schedules.relax_pack_dense import PackDenseWeights
from .schedules.relax_simplify import SimplifyGraph
from .schedules.tuning import InProcessBuilder, InProcessRunner

__all__ = [
    "ProtectScheduledKernels",
    "apply_schedules",
    "build",
    "compile_module",
    "default_database_dir",
    "import_onnx",
    "optimize",
    "relax_passes",
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
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    if optimize_onnx:
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
        t.LegalizeOps(customize_legalize_map=LEGALIZE_MAP),
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
    # the evolutionary search's population scales with the trial budget (its default, 512 candidates with 50
    # random ones first, took 4 minutes to choose 4 trials on 2 cores)
    population = min(512, max(64, 16 * trials))
    strategy = ms.search_strategy.EvolutionarySearch(population_size=population,
                                                     init_min_unmeasured=min(50, population // 4))
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, os.fspath(database_dir), strategy=strategy, num_threads=os.cpu_count() or 1)
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


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None
