"""Pruning with calibration data (``prune --method wanda|sparsegpt --calibration ...``) and the accuracy report
every approximate command gives.

Flow: canonicalize; collect each prunable layer's input statistics (:mod:`sparseforge.passes.calibrated.stats`)
by running the canonical model in ONNX Runtime over the calibration batches (one pass, the dense model's
activations, memory bounded by one batch and the ``K x K`` statistics; with ``--sequential`` one pass per stage
of layers, on the model as pruned so far); prune with them; then run the original and the pruned model on the
held-out samples and report the error of every output.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from sparseforge.ir.conv import spec_of
from sparseforge.ir.keys import step_record
from sparseforge.ir.weights import weight_views
from sparseforge.passes.calibrated.stats import LayerStats, accumulate
from sparseforge.runtime.activations import run_batches
from sparseforge.runtime.compare import session

from .calibration_data import CalibrationData

logger = logging.getLogger("sparseforge.driver.calibration")


def collect_stats(model: ir.Model, data: CalibrationData,
                  only: Collection[str] | None = None) -> dict[str, LayerStats]:
    """Input statistics of every MatMul/Gemm/Conv weight layer of ``model`` (node name -> stats) whose activation
    is the left operand, over every calibration batch; of the layers named in ``only`` when given."""
    targets: dict[str, list[tuple[str, Any]]] = {}
    stats: dict[str, LayerStats] = {}
    for view in weight_views(model.graph):
        if only is not None and view.name not in only:
            continue
        if view.data_index != 0 or not np.issubdtype(view.stored().dtype, np.floating):
            continue
        x = view.node.inputs[0]
        spec = None
        if view.node.op_type == "Conv":
            if x.shape is None or not x.shape.is_static():
                continue
            try:
                spec = spec_of(view.node, tuple(int(d) for d in x.shape), tuple(view.stored().shape))
            except ValueError:
                continue
        n, k = view.shape
        stats[view.name] = LayerStats.empty(k, spec.group if spec is not None else 1)
        targets.setdefault(x.name, []).append((view.name, spec))
    if not stats:
        return stats
    proto = ir.to_proto(model)
    proto = onnx.shape_inference.infer_shapes(proto) if len(proto.graph.value_info) == 0 else proto
    rng = np.random.default_rng(0)
    done = [0]

    def on_batch(values: Mapping[str, np.ndarray]) -> None:
        for name, layers in targets.items():
            for layer, spec in layers:
                accumulate(stats[layer], values[name], spec, rng)
        done[0] += 1
        step_record(logger, done[0], data.runs, "collecting layer inputs")

    step_record(logger, 0, data.runs, "collecting layer inputs")
    run_batches(proto, list(targets), data.batches(), on_batch)
    return stats


# ------------------------------------------------------------------------------------------ accuracy


def output_errors(reference: onnx.ModelProto, candidate: onnx.ModelProto, data: CalibrationData
                  ) -> list[dict[str, Any]]:
    """Per output on ``data`` (both models run batch by batch): relative L2 error, cosine similarity, max absolute
    error, and for classifier-shaped outputs (``[batch, classes]``, classes > 1) the top-1 agreement."""
    ref_sess, cand_sess = session(reference), session(candidate)
    names = [o.name for o in ref_sess.get_outputs()]
    acc = {n: dict(diff_sq=0.0, ref_sq=0.0, cand_sq=0.0, dot=0.0, max_abs=0.0, agree=0, rows=0, classifier=False)
           for n in names}
    for feeds in data.batches():
        refs = ref_sess.run(names, feeds)
        cands = cand_sess.run(names, feeds)
        for name, a, b in zip(names, refs, cands):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            e = acc[name]
            e["diff_sq"] += float(np.sum((a - b) ** 2))
            e["ref_sq"] += float(np.sum(a ** 2))
            e["cand_sq"] += float(np.sum(b ** 2))
            e["dot"] += float(np.sum(a * b))
            e["max_abs"] = max(e["max_abs"], float(np.max(np.abs(a - b))) if a.size else 0.0)
            if a.ndim == 2 and a.shape[1] > 1:
                e["classifier"] = True
                e["agree"] += int(np.sum(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
                e["rows"] += a.shape[0]
    out = []
    for name in names:
        e = acc[name]
        row = {"output": name,
               "relative_l2": float(np.sqrt(e["diff_sq"] / e["ref_sq"])) if e["ref_sq"] else float(np.sqrt(e["diff_sq"])),
               "cosine": float(e["dot"] / np.sqrt(e["ref_sq"] * e["cand_sq"])) if e["ref_sq"] and e["cand_sq"] else 1.0,
               "max_abs": e["max_abs"], "samples": data.runs * data.batch}
        if e["classifier"]:
            row["top1_agreement"] = e["agree"] / max(e["rows"], 1)
        out.append(row)
    return out


def dense_weights(model: ir.Model, names) -> dict[str, np.ndarray]:
    """Copies of the ``(output, reduction)`` weights of the layers ``names`` (before pruning)."""
    return {v.name: np.array(v.matrix(), np.float64) for v in weight_views(model.graph) if v.name in names}


def layer_errors(before: Mapping[str, np.ndarray], model_after: ir.Model, stats: Mapping[str, LayerStats]
                 ) -> dict[str, float]:
    """Per pruned layer, the relative reconstruction error of its output on the calibration inputs:
    ``sqrt(tr(D H D^T) / tr(W H W^T))`` with ``D = W' - W`` and ``H`` its input statistics."""
    out = {}
    for view in weight_views(model_after.graph):
        if view.name not in stats or view.name not in before:
            continue
        w = before[view.name]
        wp = view.matrix().astype(np.float64)
        if w.shape != wp.shape:
            continue
        h = stats[view.name].hessian
        groups = h.shape[0]
        rows = w.shape[0] // groups
        num = den = 0.0
        for g in range(groups):
            d = (wp - w)[g * rows:(g + 1) * rows]
            wg = w[g * rows:(g + 1) * rows]
            num += float(np.einsum("ik,kl,il->", d, h[g], d))
            den += float(np.einsum("ik,kl,il->", wg, h[g], wg))
        out[view.name] = float(np.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0
    return out
