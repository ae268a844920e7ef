"""``sparseforge compress``: per layer, the sparsity that minimizes the target's predicted latency under a measured
output-error budget (or the least error for a speedup goal), with the compiler's own cost model. APPROXIMATE.

Flow:

1. canonicalize; read the calibration data (:mod:`.calibration_data`), keep the last ``holdout`` part aside;
2. collect every weight layer's input statistics ``H`` (:mod:`.calibrated_prune`);
3. for every layer and level (dense, :data:`LEVELS` unstructured, 2:4, :data:`BLOCK_LEVELS` in ``r x 1`` blocks,
   and for MatMul/Gemm layers the ranks of :data:`RANK_FRACTIONS` by activation-aware SVD, Monarch projections,
   and sparse + low rank, written into the model as its products), prune (SparseGPT, weights updated) or factor,
   and record the
   layer's reconstruction error on the calibration inputs and the target's predicted time of the layer (dense, the
   best sparse kernel at the resulting density, or the two thin / block products: the decision pass's cost model;
   the compiler's LowRank and Monarch passes factor such weights exactly and keep them where their cost model
   agrees);
4. search a Lagrange multiplier ``lam``: each layer takes the level minimizing ``time + lam * dense_time * error^2``;
   for ``max_output_error`` the fastest assignment whose *measured* relative output error on the calibration part
   (ONNX Runtime, every output) stays within the budget; for ``speedup`` the most accurate one whose predicted
   speedup of the weight layers reaches the goal;
5. write the model and measure it on the held-out part (the accuracy report).

Predicted times are of the weight layers only (the rest of the model is not changed). A pruned level's time is
what ``compile`` would predict for it: the fastest of dense and every sparse option of its structure (CSR, the BSR
block shapes it has, N:M it complies with; :func:`~sparseforge.passes.decide.best_option`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common  # noqa: F401 - ir.passes.common below

from sparseforge.errors import SparseforgeError
from sparseforge.ir.forms import monarch
from sparseforge.ir.forms.sparse_low_rank import SparseLowRank
from sparseforge.ir.keys import step_record
from sparseforge.ir.weights import WeightView, weight_views
from sparseforge.passes.calibrated import sparsegpt, svd, wanda
from sparseforge.passes.calibrated.stats import LayerStats
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.analysis.analyse import facts_for
from sparseforge.passes.decide import FACTS_READ, best_option, candidate
from sparseforge.passes.rewrites.candidates import static_matmul_candidate
from sparseforge.passes.rewrites.sparse_low_rank import rewrite as split_rewrite
from sparseforge.runtime.compare import session

from .calibrated_prune import collect_stats, output_errors
from .calibration_data import CalibrationData

logger = logging.getLogger("sparseforge.driver.calibration")

#: Unstructured sparsity levels offered to every layer (with dense and 2:4).
LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: Ranks offered to MatMul/Gemm layers, as fractions of the break-even rank ``N K / (N + K)``.
RANK_FRACTIONS = (0.125, 0.25, 0.5)
#: Sparse + low-rank levels: these ranks (the compiler's detector searches powers of two up to 16) plus the largest
#: residual entries (scored like Wanda) at this density.
SPARSE_LOW_RANKS = (4, 16)
SPARSE_LOW_RANK_DENSITY = 0.1
#: Monarch block shapes offered to MatMul/Gemm layers (the most compact of :func:`monarch.candidates`).
MONARCH_SHAPES = 2
SEARCH_STEPS = 14
#: Block levels: SparseGPT pruning whole ``r x 1`` blocks (the shapes every target's BSR kernel and the direct
#: sparse convolution run) at these sparsities.
BLOCK_LEVEL_SHAPES = ((4, 1), (8, 1))
BLOCK_LEVELS = (0.7, 0.8, 0.9)


@dataclasses.dataclass
class Level:
    label: str
    matrix: np.ndarray
    error: float  # relative reconstruction error of the layer's output on the calibration inputs
    seconds: float  # predicted time of the layer on the target
    kernel: str
    #: for a sparse + low-rank level: the split, written into the model as its products (``U V`` and ``S``)
    parts: SparseLowRank | None = None


@dataclasses.dataclass
class LayerChoice:
    view: WeightView
    levels: list[Level]
    chosen: int = 0

    @property
    def dense(self) -> Level:
        return self.levels[0]


def _relative_error(w: np.ndarray, wp: np.ndarray, stats: LayerStats) -> float:
    groups = stats.hessian.shape[0]
    rows = w.shape[0] // groups
    num = den = 0.0
    for g in range(groups):
        d = (wp - w)[g * rows:(g + 1) * rows]
        wg = w[g * rows:(g + 1) * rows]
        num += float(np.einsum("ik,kl,il->", d, stats.hessian[g], d))
        den += float(np.einsum("ik,kl,il->", wg, stats.hessian[g], wg))
    return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0


def _prune(w: np.ndarray, stats: LayerStats, **kw) -> np.ndarray:
    groups = stats.hessian.shape[0]
    rows = w.shape[0] // groups
    out = np.empty_like(w)
    for g in range(groups):
        out[g * rows:(g + 1) * rows] = sparsegpt.prune(w[g * rows:(g + 1) * rows], stats.hessian[g], **kw)
    return out


def _predict(cost_model, cand, matrix: np.ndarray) -> tuple[float, str]:
    """(seconds, kernel) of ``matrix`` as ``compile`` would predict it: the fastest of dense and the sparse options
    of its structure (CSR, the BSR block shapes it has, N:M it complies with) by 1.1x, as the decision pass."""
    n, k = matrix.shape
    kind = cand.cost_kind
    dense = cost_model.predict("dense", cand.m, n, k, kind=kind)
    if dense is None:
        raise SparseforgeError("the cost model has no timing for a dense layer", hint="run sparseforge calibrate")
    best = (dense, "dense")
    if np.count_nonzero(matrix) < matrix.size:
        m32 = matrix.astype(np.float32)
        found = best_option(cost_model, cand, m32, facts_for(cand.view, FACTS_READ, m32), dense)
        if found is not None and found[0] * 1.1 < dense:
            best = (found[0], found[1].label)
    return best


def _structured_levels(cost_model, cand, w: np.ndarray, stats: LayerStats) -> list[Level]:
    """Activation-aware low-rank levels of a MatMul/Gemm weight, timed as the two thin products, and Monarch
    projections (the most compact block shapes), timed as the two batched block products."""
    n, k = w.shape
    out = []
    for a, f in monarch.candidates(n, k)[:MONARCH_SHAPES]:
        g, c = n // f, k // a
        first = cost_model.predict("dense", cand.m, f, c, kind="matmul")
        second = cost_model.predict("dense", cand.m, g, a, kind="matmul")
        if first is None or second is None:
            continue
        wp = monarch.project(w, a, f)
        out.append(Level(f"monarch {a}x{f}", wp, _relative_error(w, wp, stats), a * first + f * second, "monarch"))
    norms = np.sqrt(np.maximum(np.diag(stats.hessian[0]), 0.0))
    splittable = static_matmul_candidate(cand.view.node) is not None
    for r in SPARSE_LOW_RANKS if splittable else ():
        if r >= 0.5 * n * k / (n + k):
            continue
        first = cost_model.predict("dense", cand.m, r, k, kind="matmul")
        second = cost_model.predict("dense", cand.m, n, r, kind="matmul")
        sparse = cost_model.predict("csr", cand.m, n, k, density=SPARSE_LOW_RANK_DENSITY, kind="matmul")
        if first is None or second is None or sparse is None:
            continue
        u, v = svd.factor(w, r, stats.hessian[0])
        low = u @ v
        residual = w - low
        keep = wanda.row_mask(np.abs(residual) * norms[None, :], 1.0 - SPARSE_LOW_RANK_DENSITY)
        s_part = np.where(keep, residual, 0.0)
        wp = low + s_part
        parts = SparseLowRank(u.astype(np.float32), v.astype(np.float32), s_part.astype(np.float32), 0.0)
        out.append(Level(f"rank {r} + {int(SPARSE_LOW_RANK_DENSITY * 100)}% sparse", wp,
                         _relative_error(w, wp, stats), first + second + sparse, "sparse + low rank", parts))
    for fraction in RANK_FRACTIONS:
        r = max(1, int(n * k / (n + k) * fraction))
        first = cost_model.predict("dense", cand.m, r, k, kind="matmul")
        second = cost_model.predict("dense", cand.m, n, r, kind="matmul")
        if first is None or second is None:
            continue
        u, v = svd.factor(w, r, stats.hessian[0])
        wp = u @ v
        out.append(Level(f"rank {r}", wp, _relative_error(w, wp, stats), first + second, "low rank"))
    return out


def build_levels(model: ir.Model, stats: dict[str, LayerStats], cost_model) -> list[LayerChoice]:
    """Every prunable layer with its levels (dense first), pruned, with errors and predicted times."""
    seen: set[int] = set()
    layers: list[LayerChoice] = []
    views = [v for v in weight_views(model.graph) if v.name in stats]
    for i, view in enumerate(views):
        step_record(logger, i, len(views), "pruning every layer at every level")
        if id(view.weight) in seen or view.stored().dtype != np.float32:
            continue
        seen.add(id(view.weight))
        cand = candidate(view.node)
        if cand is None:
            continue
        w = np.array(view.matrix(), np.float64)
        n, k = w.shape
        st = stats[view.name]
        dense_s, _ = _predict(cost_model, cand, w)
        levels = [Level("dense", w, 0.0, dense_s, "dense")]
        for s in LEVELS:
            wp = _prune(w, st, sparsity=s)
            levels.append(Level(f"{int(round(s * 100))}%", wp, _relative_error(w, wp, st),
                                *_predict(cost_model, cand, wp)))
        if k % 4 == 0:
            wp = _prune(w, st, nm=(2, 4))
            levels.append(Level("2:4", wp, _relative_error(w, wp, st), *_predict(cost_model, cand, wp)))
        for r, c in BLOCK_LEVEL_SHAPES:
            if (n // st.hessian.shape[0]) % r or k % c or n < 2 * r:
                continue
            for s in BLOCK_LEVELS:
                wp = _prune(w, st, sparsity=s, block=(r, c))
                levels.append(Level(f"{int(round(s * 100))}% in {r}x{c} blocks", wp, _relative_error(w, wp, st),
                                    *_predict(cost_model, cand, wp)))
        if cand.kind == "matmul" and st.hessian.shape[0] == 1:
            levels += _structured_levels(cost_model, cand, w, st)
        layers.append(LayerChoice(view, levels))
    step_record(logger, len(views), len(views), "pruning every layer at every level")
    return layers


def assign(layers: Sequence[LayerChoice], lam: float) -> list[int]:
    """Per layer the level minimizing ``time + lam * dense_time * error^2``."""
    out = []
    for layer in layers:
        d = layer.dense.seconds
        out.append(int(np.argmin([lv.seconds + lam * d * lv.error ** 2 for lv in layer.levels])))
    return out


def predicted_speedup(layers: Sequence[LayerChoice], choice: Sequence[int]) -> float:
    dense = sum(layer.dense.seconds for layer in layers)
    chosen = sum(layer.levels[c].seconds for layer, c in zip(layers, choice))
    return dense / chosen if chosen > 0 else 1.0


def _with_choice(proto: onnx.ModelProto, layers: Sequence[LayerChoice], choice: Sequence[int]) -> onnx.ModelProto:
    model = ir.from_proto(proto)
    apply(model, layers, choice)
    return ir.to_proto(model)


def apply(model: ir.Model, layers: Sequence[LayerChoice], choice: Sequence[int]) -> None:
    """Write the chosen levels' weights into ``model`` (matched by layer name)."""
    views = {v.name: v for v in weight_views(model.graph)}
    for layer, c in zip(layers, choice):
        if c == 0:
            continue
        view = views[layer.view.name]
        if layer.levels[c].parts is not None:  # sparse + low rank: the products themselves
            split_rewrite(model, view.node, layer.levels[c].parts)
            continue
        new = new_initializer(model, f"{view.weight.name}_compressed",
                              view.to_stored(layer.levels[c].matrix.astype(view.stored().dtype)))
        for user, index in list(view.weight.uses()):
            user.replace_input_with(index, new)
    ir.passes.common.RemoveUnusedNodesPass()(model)  # the replaced weights


def _output_error(candidate_proto: onnx.ModelProto, data: CalibrationData, ref_outputs: list) -> float:
    """Max over outputs of the relative L2 error against ``ref_outputs`` (the reference's, batch by batch)."""
    sess = session(candidate_proto)
    names = [o.name for o in sess.get_outputs()]
    diff, ref = np.zeros(len(names)), np.zeros(len(names))
    for feeds, expected in zip(data.batches(), ref_outputs):
        got = sess.run(names, feeds)
        for i, (a, b) in enumerate(zip(expected, got)):
            diff[i] += float(np.sum((np.asarray(a, np.float64) - b) ** 2))
            ref[i] += float(np.sum(np.asarray(a, np.float64) ** 2))
    return float(np.max(np.sqrt(diff / np.maximum(ref, 1e-30))))


def search(proto: onnx.ModelProto, layers: Sequence[LayerChoice], data: CalibrationData, *,
           max_output_error: float | None = None, speedup: float | None = None) -> tuple[list[int], float, float]:
    """(choice, lam, measured calibration error) of the Lagrangian search for the goal."""
    ref_sess = session(proto)
    names = [o.name for o in ref_sess.get_outputs()]
    ref_outputs = [ref_sess.run(names, feeds) for feeds in data.batches()]
    lo, hi = -6.0, 8.0  # log10 lam: small lam = fast and inaccurate
    best: tuple[list[int], float, float] | None = None
    for step in range(SEARCH_STEPS):
        step_record(logger, step, SEARCH_STEPS, "searching the per-layer levels")
        mid = (lo + hi) / 2
        choice = assign(layers, 10 ** mid)
        if max_output_error is not None:
            err = _output_error(_with_choice(proto, layers, choice), data, ref_outputs)
            ok = err <= max_output_error
        else:
            err = float("nan")
            ok = predicted_speedup(layers, choice) >= speedup
        if max_output_error is not None:
            if ok:  # feasible: try faster (smaller lam)
                best, hi = (choice, 10 ** mid, err), mid
            else:
                lo = mid
        else:
            if ok:  # fast enough: try more accurate (larger lam)
                best, lo = (choice, 10 ** mid, err), mid
            else:
                hi = mid
    step_record(logger, SEARCH_STEPS, SEARCH_STEPS, "searching the per-layer levels")
    if best is None:
        choice = [0] * len(layers) if max_output_error is not None else assign(layers, 10 ** -6)
        err = _output_error(_with_choice(proto, layers, choice), data, ref_outputs) \
            if max_output_error is not None else float("nan")
        return choice, 0.0, err
    if speedup is not None:
        choice = best[0]
        err = _output_error(_with_choice(proto, layers, choice), data, ref_outputs)
        return choice, best[1], err
    return best


def report_rows(layers: Sequence[LayerChoice], choice: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for layer, c in zip(layers, choice):
        lv = layer.levels[c]
        rows.append({"node": layer.view.name, "shape": list(layer.dense.matrix.shape), "level": lv.label,
                     "kernel": lv.kernel, "layer_error": lv.error, "dense_ms": layer.dense.seconds * 1e3,
                     "predicted_ms": lv.seconds * 1e3,
                     "density": float(np.count_nonzero(lv.matrix)) / lv.matrix.size})
    return rows


def compress(model: ir.Model, fit: CalibrationData, held: CalibrationData | None, cost_model, *,
             max_output_error: float | None, speedup: float | None) -> dict[str, Any]:
    """Compress ``model`` (canonical, in place) for the goal; returns the report (layers, errors, speedup)."""
    check_goal(max_output_error, speedup)
    original = ir.to_proto(model)
    stats = collect_stats(model, fit)
    layers = build_levels(model, stats, cost_model)
    if not layers:
        raise SparseforgeError("no layer can be compressed (no MatMul/Gemm/Conv weight layer with calibration "
                               "statistics)")
    choice, lam, calib_error = search(original, layers, fit, max_output_error=max_output_error, speedup=speedup)
    apply(model, layers, choice)
    accuracy = output_errors(original, ir.to_proto(model), held) if held is not None else None
    return {"layers": report_rows(layers, choice), "lambda": lam, "calibration_error": calib_error,
            "predicted_speedup": predicted_speedup(layers, choice), "accuracy": accuracy,
            "goal": {"max_output_error": max_output_error, "speedup": speedup}}


def check_goal(max_output_error: float | None, speedup: float | None) -> None:
    """One clear error unless exactly one valid goal is given."""
    if (max_output_error is None) == (speedup is None):
        raise SparseforgeError("give exactly one goal: --max-output-error E or --speedup S")
    if max_output_error is not None and not max_output_error > 0:
        raise SparseforgeError(f"--max-output-error must be positive, got {max_output_error}")
    if speedup is not None and not speedup >= 1.0:
        raise SparseforgeError(f"--speedup must be at least 1, got {speedup}")
