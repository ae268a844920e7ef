"""Pruning (approximate): zero weights to create structure the exact passes and kernels can use.

Methods, all in the ``(output, reduction)`` view of :mod:`sparseforge.ir.weights`:

* ``magnitude``: unstructured; zero the smallest ``|w|``;
* ``nm``: N:M along the reduction axis; in every group of M consecutive weights keep the N largest;
* ``block``: ``rows x cols`` blocks; zero the blocks with the smallest L2 norm;
* ``channel``: output channels; zero the rows with the smallest L2 norm (the bias is kept, so the channel
  outputs the constant act(b), which ShrinkChannels folds into the consumers exactly);
* ``wanda`` (calibration data): ``|w| * ||x_j||`` compared per output row (unstructured), per group of M (``nm``
  pattern) or per block (``block`` pattern); values kept, only the mask uses data;
* ``sparsegpt`` (calibration data): SparseGPT's blockwise OBS pruning with weight updates, for the same patterns;
* ``group``: coupled channel groups of the channel graph (DepGraph), zeroed so that ShrinkChannels (``export``)
  removes every pruned channel exactly (:mod:`sparseforge.passes.rewrites.channel_groups`); with calibration
  statistics the importance weighs each input column by its energy.

The data methods take per-layer input statistics (:class:`~sparseforge.passes.calibrated.stats.LayerStats`, by
node name) in ``PruneConfig.stats``; a layer without statistics (a constant left operand) is pruned by magnitude
and says so.

``scope="layer"`` prunes each weight to the target sparsity; ``scope="global"`` uses one threshold over all
selected weights. Pruning changes the model's outputs: the report gives each layer's relative weight error
``||W - W'||_F / ||W||_F`` and layers whose error would exceed ``max_weight_error`` are left unpruned.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from sparseforge.errors import SparseforgeError
from sparseforge.ir.weights import WeightView, quantized_views, weight_views
from sparseforge.passes.calibrated import sparsegpt, wanda
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.rewrites.channel_groups import GroupPruner
from sparseforge.passes.infra import PassReport, ReportingPass

METHODS = ("magnitude", "nm", "block", "channel", "group", "wanda", "sparsegpt")
#: Methods that need calibration data (``PruneConfig.stats``).
DATA_METHODS = ("wanda", "sparsegpt")
PATTERNS = ("unstructured", "nm", "block")


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    method: str
    sparsity: float | None = None
    nm: tuple[int, int] = (2, 4)
    block: tuple[int, int] = (4, 1)
    scope: str = "layer"
    skip: tuple[str, ...] = ()
    max_weight_error: float | None = None
    pattern: str = "unstructured"  # of the data methods: unstructured, nm or block
    stats: Mapping | None = dataclasses.field(default=None, compare=False, repr=False)
    #: sequential data pruning: ``restats(model, names)`` collects the statistics of the named layers from the
    #: model as pruned so far; the layers are pruned stage by stage (:func:`layer_stages`), each stage with
    #: statistics that see every earlier stage pruned (SparseGPT's sequential mode). None: one-shot ``stats``.
    restats: Callable[[ir.Model, Sequence[str]], Mapping] | None = dataclasses.field(
        default=None, compare=False, repr=False)

    @property
    def needs_data(self) -> bool:
        return self.method in DATA_METHODS

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SparseforgeError(f"unknown pruning method '{self.method}'", hint=f"use one of {', '.join(METHODS)}")
        if self.restats is not None and not self.needs_data:
            raise SparseforgeError(f"--sequential applies to the data methods ({', '.join(DATA_METHODS)}), not to "
                                   f"--method {self.method}", hint="drop --sequential")
        if self.needs_data:
            if self.pattern not in PATTERNS:
                raise SparseforgeError(f"unknown pattern '{self.pattern}'", hint=f"use one of {', '.join(PATTERNS)}")
            if self.scope == "global":
                raise SparseforgeError(f"--method {self.method} prunes each layer against its own inputs; --global "
                                       "does not apply to it")
        if self.method != "nm" and not (self.needs_data and self.pattern == "nm"):
            if self.sparsity is None:
                raise SparseforgeError(f"--sparsity is required for --method {self.method}",
                                       hint="e.g. --sparsity 0.9 zeroes 90% of the weights")
            if not 0.0 <= self.sparsity < 1.0:
                raise SparseforgeError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        n, m = self.nm
        if not (0 < n < m):
            raise SparseforgeError(f"bad N:M pattern {n}:{m}", hint="N must be between 1 and M-1, e.g. 2:4")
        if self.block[0] < 1 or self.block[1] < 1:
            raise SparseforgeError(f"bad block shape {self.block[0]}x{self.block[1]}")
        if self.scope not in ("layer", "global"):
            raise SparseforgeError(f"unknown scope '{self.scope}'", hint="use layer or global")
        if (self.method == "nm" or self.pattern == "nm" and self.needs_data) and self.scope == "global":
            raise SparseforgeError("N:M pruning is per group; --global does not apply to it")


def parse_pair(text: str, sep: str, what: str) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``; ``"4x1"`` -> ``(4, 1)``."""
    parts = text.lower().split(sep)
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise SparseforgeError(f"bad {what} '{text}'", hint=f"write it as A{sep}B, e.g. " +
                               ("2:4" if sep == ":" else "4x1")) from None
    return a, b


# ------------------------------------------------------------------------------------------ masks


def magnitude_scores(w: np.ndarray) -> np.ndarray:
    return np.abs(w.astype(np.float64))


def nm_mask(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep-mask keeping the ``n`` largest ``|w|`` of every ``m`` consecutive reduction elements."""
    rows, cols = w.shape
    groups = -(-cols // m)
    scores = np.zeros((rows, groups * m))
    scores[:, :cols] = np.abs(w.astype(np.float64)) + 1.0  # padding never wins over a real weight
    grouped = scores.reshape(rows, groups, m)
    order = np.argsort(-grouped, axis=2, kind="stable")
    keep = np.zeros_like(grouped, dtype=bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    return keep.reshape(rows, groups * m)[:, :cols]


def block_scores(w: np.ndarray, br: int, bc: int) -> np.ndarray:
    """L2 norm of every ``br x bc`` block (edges zero-padded), shape ``[ceil(R/br), ceil(C/bc)]``."""
    rows, cols = w.shape
    rb, cb = -(-rows // br), -(-cols // bc)
    padded = np.zeros((rb * br, cb * bc))
    padded[:rows, :cols] = w.astype(np.float64) ** 2
    return np.sqrt(padded.reshape(rb, br, cb, bc).sum(axis=(1, 3)))


def expand_blocks(block_keep: np.ndarray, br: int, bc: int, shape: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(block_keep, br, axis=0), bc, axis=1)[: shape[0], : shape[1]]


def row_scores(w: np.ndarray) -> np.ndarray:
    return np.sqrt((w.astype(np.float64) ** 2).sum(axis=1))


def keep_largest(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask zeroing the ``round(sparsity * size)`` smallest scores (stable, exact count)."""
    flat = scores.reshape(-1)
    n_zero = int(round(sparsity * flat.size))
    keep = np.ones(flat.size, dtype=bool)
    if n_zero:
        keep[np.argsort(flat, kind="stable")[:n_zero]] = False
    return keep.reshape(scores.shape)


# ------------------------------------------------------------------------------------------ the pass


class PrunePass(ReportingPass):
    """Zero weights by the configured method; approximate, with the weight error reported per layer."""

    name = "Prune"

    def __init__(self, config: PruneConfig):
        super().__init__()
        config.validate()
        self.config = config

    def _selected(self, model: ir.Model, report: PassReport) -> list[WeightView]:
        views: list[WeightView] = []
        seen: set[int] = set()
        for view in weight_views(model.graph):
            if any(fnmatch.fnmatchcase(view.name, p) or fnmatch.fnmatchcase(view.weight.name or "", p)
                   for p in self.config.skip):
                report.note("skip.pattern", "matches a --skip pattern", view.name)
                continue
            if id(view.weight) in seen:
                continue  # a shared weight is pruned once
            seen.add(id(view.weight))
            if not np.issubdtype(view.stored().dtype, np.floating):
                report.note("skip.dtype", f"weight dtype {view.stored().dtype} is not floating point", view.name)
                continue
            views.append(view)
        for view in quantized_views(model.graph):
            report.note("skip.quantized", f"{view.op_type} layer with {view.stored().dtype} weights is not pruned: "
                        "prune the float model, then quantize it", view.name)
        return views

    def _scores(self, mat: np.ndarray) -> np.ndarray:
        c = self.config
        if c.method == "magnitude":
            return magnitude_scores(mat)
        if c.method == "block":
            return block_scores(mat, *c.block)
        return row_scores(mat)

    def _mask_from_keep(self, keep: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        c = self.config
        if c.method == "block":
            return expand_blocks(keep, *c.block, shape)
        if c.method == "channel":
            return np.repeat(keep[:, None], shape[1], axis=1)
        return keep

    def _data_pruned(self, view: WeightView, mat: np.ndarray, report: PassReport,
                     all_stats: Mapping | None) -> np.ndarray:
        """The weight pruned by a data method (Wanda's mask, or SparseGPT's pruned and updated weight)."""
        c = self.config
        stats = (all_stats or {}).get(view.name)
        if stats is None:
            report.note("fallback.magnitude", f"no calibration statistics for this layer (its input is not the "
                        f"left operand, or its shape is not static): pruned by magnitude", view.name)
            return np.where(self._pattern_mask(magnitude_scores(mat)), mat, np.zeros((), mat.dtype))
        groups = stats.hessian.shape[0]
        rows = mat.shape[0] // groups
        if c.method == "wanda":
            score = wanda.scores(mat, stats.column_norms, rows)
            keep = wanda.row_mask(score, c.sparsity) if c.pattern == "unstructured" else self._pattern_mask(score)
            return np.where(keep, mat, np.zeros((), mat.dtype))
        out = np.empty_like(mat)
        for g in range(groups):
            part = mat[g * rows:(g + 1) * rows]
            out[g * rows:(g + 1) * rows] = sparsegpt.prune(
                part, stats.hessian[g], sparsity=None if c.pattern == "nm" else c.sparsity,
                nm=c.nm if c.pattern == "nm" else None, block=c.block if c.pattern == "block" else None)
        return out

    def _pattern_mask(self, score: np.ndarray) -> np.ndarray:
        """Keep-mask of the configured pattern from per-weight scores (per layer)."""
        c = self.config
        if c.pattern == "nm" or c.method == "nm":
            return nm_mask(score, *c.nm)
        if c.pattern == "block" or c.method == "block":
            return expand_blocks(keep_largest(block_scores(score, *c.block), c.sparsity), *c.block, score.shape)
        return keep_largest(score, c.sparsity)

    def _replace(self, model: ir.Model, view: WeightView, matrix: np.ndarray) -> None:
        new = new_initializer(model, f"{view.weight.name}_pruned", view.to_stored(matrix))
        for user, index in list(view.weight.uses()):
            user.replace_input_with(index, new)

    def _run_groups(self, model: ir.Model, report: PassReport) -> None:
        """``group``: prune coupled channel groups (see :mod:`.channel_groups`)."""
        before = {v.name: np.array(v.matrix(), np.float64) for v in self._selected(model, report)}
        skipped = {v.name for v in weight_views(model.graph) if v.name not in before}
        chosen = GroupPruner(model, self.config.sparsity, self.config.stats, skip=skipped).run(
            lambda view, matrix: self._replace(model, view, matrix))
        layers, total_sq, total_err_sq = [], 0.0, 0.0
        for view in weight_views(model.graph):
            if view.name not in before:
                continue
            mat, old = view.matrix().astype(np.float64), before[view.name]
            norm = float(np.sqrt(np.sum(old ** 2)))
            err = float(np.sqrt(np.sum((old - mat) ** 2)))
            total_sq += norm ** 2
            total_err_sq += err ** 2
            layers.append({"node": view.name, "weight": view.weight.name, "shape": list(mat.shape),
                           "sparsity_before": 1.0 - np.count_nonzero(old) / old.size,
                           "sparsity_after": 1.0 - np.count_nonzero(mat) / mat.size,
                           "relative_weight_error": err / norm if norm else 0.0, "pruned": True})
            if err:
                self.stamp(view.node, f"pruned (channel groups): weight error {err / norm if norm else 0:.3g}")
                report.changed("pruned", f"channel groups: sparsity {layers[-1]['sparsity_before']:.2f} -> "
                               f"{layers[-1]['sparsity_after']:.2f}", view.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)
        report.counts["channel groups pruned"] = len(chosen)
        report.details.update(layers=layers, method="group", groups=len(chosen),
                              relative_weight_error=float(np.sqrt(total_err_sq / total_sq)) if total_sq else 0.0)
        report.warn("approximate", "pruning changes the model's outputs; check its accuracy on your own data")

    def run(self, model: ir.Model, report: PassReport) -> None:
        c = self.config
        if c.method == "group":
            self._run_groups(model, report)
            return
        views = self._selected(model, report)
        totals = {"layers": [], "sq": 0.0, "err_sq": 0.0}
        if c.needs_data and c.restats is not None:
            stages = layer_stages(model.graph, views)
            for stage in stages:
                stats = c.restats(model, [v.name for v in stage])
                for view in stage:
                    mat = view.matrix()
                    self._commit(model, view, mat, self._data_pruned(view, mat, report, stats), report, totals)
            report.counts["sequential stages"] = len(stages)
        else:
            for view, pruned in zip(views, self._pruned_at_once(views, report), strict=True):
                self._commit(model, view, view.matrix(), pruned, report, totals)
        ir.passes.common.RemoveUnusedNodesPass()(model)
        report.details["layers"] = totals["layers"]
        report.details["relative_weight_error"] = (float(np.sqrt(totals["err_sq"] / totals["sq"])) if totals["sq"]
                                                   else 0.0)
        report.details["method"] = c.method
        report.warn("approximate", "pruning changes the model's outputs; check its accuracy on your own data")

    def _pruned_at_once(self, views: list[WeightView], report: PassReport) -> list[np.ndarray]:
        """Every selected weight pruned from the model as it is (one-shot statistics for the data methods)."""
        c = self.config
        if c.needs_data:
            return [self._data_pruned(view, view.matrix(), report, c.stats) for view in views]
        if c.method == "nm":
            masks = [nm_mask(view.matrix(), *c.nm) for view in views]
        elif c.scope == "layer":
            masks = [self._mask_from_keep(keep_largest(self._scores(v.matrix()), c.sparsity), v.shape) for v in views]
        else:
            scores = [self._scores(v.matrix()) for v in views]
            masks = []
            if scores:
                keep_all = keep_largest(np.concatenate([s.reshape(-1) for s in scores]), c.sparsity)
                offset = 0
                for view, s in zip(views, scores):
                    masks.append(self._mask_from_keep(keep_all[offset: offset + s.size].reshape(s.shape), view.shape))
                    offset += s.size
        return [np.where(mask, view.matrix(), np.zeros((), view.matrix().dtype)) for view, mask in zip(views, masks)]

    def _commit(self, model: ir.Model, view: WeightView, mat: np.ndarray, pruned: np.ndarray, report: PassReport,
                totals: dict) -> None:
        """Write ``pruned`` for ``view`` unless it breaks the weight-error budget; record the layer's entry."""
        c = self.config
        norm = float(np.sqrt(np.sum(mat.astype(np.float64) ** 2)))
        err = float(np.sqrt(np.sum((mat.astype(np.float64) - pruned) ** 2)))
        rel = err / norm if norm else 0.0
        entry = {"node": view.name, "weight": view.weight.name, "shape": list(mat.shape),
                 "sparsity_before": 1.0 - np.count_nonzero(mat) / mat.size,
                 "sparsity_after": 1.0 - np.count_nonzero(pruned) / mat.size,
                 "relative_weight_error": rel, "pruned": True}
        totals["layers"].append(entry)
        totals["sq"] += norm ** 2
        if c.max_weight_error is not None and rel > c.max_weight_error:
            entry.update(pruned=False, sparsity_after=entry["sparsity_before"], relative_weight_error=0.0)
            report.note("skip.error-budget", f"pruning would change the weight by {rel:.3g} (relative), above "
                        f"the budget {c.max_weight_error:g}", view.name)
            return
        totals["err_sq"] += err ** 2
        if np.array_equal(pruned, mat):
            return
        self._replace(model, view, pruned)
        self.stamp(view.node, f"pruned ({c.method}): weight error {rel:.3g}")
        report.changed("pruned", f"sparsity {entry['sparsity_before']:.2f} -> {entry['sparsity_after']:.2f}, "
                       f"relative weight error {rel:.3g}", view.name)


def layer_stages(graph: ir.Graph, views: Sequence[WeightView]) -> list[list[WeightView]]:
    """``views`` grouped by depth: a layer's stage is the number of selected layers on the longest path from the
    graph inputs to its activation input, so no layer depends on a layer of its own or a later stage (layers
    reading the same activation, such as Q/K/V projections, share a stage). Graph order within a stage."""
    by_node = {id(v.node): v for v in views}
    depth: dict[int, int] = {}
    stages: dict[int, list[WeightView]] = {}
    for node in graph:  # onnx-ir graphs are topologically sorted
        d = max((depth.get(id(v), 0) for v in node.inputs if v is not None), default=0)
        view = by_node.get(id(node))
        if view is not None:
            stages.setdefault(d, []).append(view)
            d += 1
        for out in node.outputs:
            depth[id(out)] = d
    return [stages[d] for d in sorted(stages)]


def prune_config_from_options(method: str, sparsity: float | None, nm: str, block: str, global_scope: bool,
                              skip: Sequence[str], max_weight_error: float | None,
                              pattern: str = "unstructured") -> PruneConfig:
    return PruneConfig(method=method, sparsity=sparsity, nm=parse_pair(nm, ":", "N:M pattern"),
                       block=parse_pair(block, "x", "block shape"), scope="global" if global_scope else "layer",
                       skip=tuple(skip), max_weight_error=max_weight_error, pattern=pattern)
