"""``sparseforge explain MODEL LAYER``: everything about one layer's decision.

For the layer (a node name, after the canonicalization and dead-channel removal ``compile`` does first): every
analysis fact of its weight; every structured form (low rank, block-diagonal, Monarch, sparse + low rank) with what
its detector found or why it did not apply, and for the ones that apply the predicted time of their products; why
sparse kernels may not be used at all when they may not; every sparse option (CSR, BSR per block shape, N:M) with
its stored fraction and predicted time against dense, and which one wins; and what would have to change for a
sparse kernel to win (the density at which the best sparse form crosses the decision threshold at this ``M``), or
for the winner to lose.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sparseforge.errors import SparseforgeError
from sparseforge.ir import forms
from sparseforge.ir.forms import block_diagonal, low_rank, monarch, sparse_low_rank
from sparseforge.ir.frontend import load, require_static_shapes
from sparseforge.ir.weights import view_of
from sparseforge.passes import pipelines
from sparseforge.passes.analysis.analyse import StructureAnalysisPass, facts_of
from sparseforge.passes.decide import (CONSIDERED_STORED_RATIO, MAX_STORED_FRACTION, SMALL_LAYER_CSR_DENSITY,
                                      SMALL_LAYER_SECONDS, candidate, is_small_layer, small_layer_rule, why_not)
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.rewrites.structured_cost import Product

from .compile import resolve_target

#: The decision threshold: a sparse kernel must be predicted this much faster than dense (as ``DecideFormat``).
MIN_SPEEDUP = 1.1


@dataclasses.dataclass
class Explanation:
    layer: str
    op_type: str
    shape: tuple[int, int]
    m: int | None
    target: str
    facts: dict[str, Any]
    structured: list[dict[str, Any]]
    sparse_allowed: str | None
    dense_s: float | None
    options: list[dict[str, Any]]
    chosen: str
    what_would_change: list[str]
    unit: str = "s"  # "relative": predictions in dense multiply-adds (rule-based targets), not seconds

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _structured(matrix: np.ndarray, m: int | None, cost_model) -> list[dict[str, Any]]:
    n, k = matrix.shape
    rows = []

    def predicted(products: list[Product]) -> float | None:
        if cost_model is None or m is None:
            return None
        times = [cost_model.predict("dense", p.m, p.n, p.k) for p in products]
        return None if any(t is None for t in times) else sum(t * p.batch for t, p in zip(times, products))

    factors, why = low_rank.factor(matrix, min(low_rank.break_even_rank(n, k), 1023))
    rows.append({"form": "low rank", "applies": factors is not None, "found": why,
                 "predicted_s": predicted([Product(m, factors.rank, k), Product(m, n, factors.rank)])
                 if factors is not None and m else None})
    blocks, why = block_diagonal.find_blocks(matrix)
    rows.append({"form": "block-diagonal", "applies": blocks is not None, "found": why,
                 "predicted_s": predicted([Product(m, r.size, c.size) for r, c in zip(blocks.rows, blocks.cols)])
                 if blocks is not None and m else None})
    if np.count_nonzero(matrix) >= matrix.size // 2:
        found, why = monarch.find(matrix)
        products = []
        if found is not None and m:
            (a, f, c), g = found.r.shape, found.l.shape[1]
            products = [Product(m, f, c, batch=a), Product(m, g, a, batch=f)]
        rows.append({"form": "Monarch", "applies": found is not None, "found": why,
                     "predicted_s": predicted(products) if products else None})
    else:
        rows.append({"form": "Monarch", "applies": False, "found": "less than half nonzero: not tested",
                     "predicted_s": None})
    parts, why = sparse_low_rank.decompose(matrix, low_rank.break_even_rank(n, k))
    rows.append({"form": "sparse + low rank", "applies": parts is not None, "found": why, "predicted_s": None})
    return rows


def _crossover(cost_model, option: forms.Option, m: int, n: int, k: int, dense_s: float, kind: str) -> float | None:
    """The largest stored fraction at which ``option``'s kernel is predicted ``MIN_SPEEDUP`` faster than dense
    (bisection: predictions are monotone in the stored fraction), or None if not even at 1% it is."""
    form = forms.get(option.form)
    if form.fixed_stored:
        return None

    def wins(density: float) -> bool:
        t = cost_model.predict(option.form, m, n, k, density=density, block=option.block, nm=option.nm,
                               nnz_blocks=None, kind=kind)
        return t is not None and t * MIN_SPEEDUP <= dense_s

    lo, hi = 0.01, 1.0
    if not wins(lo):
        return None
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if wins(mid) else (lo, mid)
    return lo


def explain(source: Any, layer: str, *, target: str = "x86", threads: int | None = None, example_inputs: Any = None,
            input_shapes=None, allow_invalid_input: bool = False, calibrate: bool = True) -> Explanation:
    """Every fact, every structured and sparse candidate form of ``layer`` with its predicted time, the choice,
    and what would change it."""
    resolved = resolve_target(target, threads)
    model = load(source, example_inputs, input_shapes=input_shapes, allow_invalid=allow_invalid_input)
    require_static_shapes(model)
    Pipeline([*pipelines.before_decisions(), StructureAnalysisPass()])(model)
    nodes = {n.name: n for n in model.graph if n.name}
    node = nodes.get(layer)
    if node is None or view_of(node) is None:
        weighted = sorted(name for name, n in nodes.items() if view_of(n) is not None)
        close = [name for name in weighted if layer.lower() in name.lower()][:10] or weighted[:10]
        raise SparseforgeError(f"no layer with a constant weight named {layer!r}", where=str(source),
                               hint="layers: " + ", ".join(close) + (" ..." if len(weighted) > len(close) else ""))
    view = view_of(node)
    matrix = view.matrix()
    n, k = matrix.shape
    facts = {name: value for name, value in facts_of(node).items()}
    cost_model = resolved.family.cost_model(resolved.description, resolved.kernel_target, measure=calibrate)
    reason = why_not(node)
    cand = candidate(node)
    m = cand.m if cand is not None else None
    kind = cand.cost_kind if cand is not None else "matmul"
    structured = _structured(matrix, m, cost_model) if matrix.dtype.kind == "f" else []
    dense_s = cost_model.predict("dense", m, n, k, kind=kind) if m else None
    options, chosen, changes = [], "dense", []
    density = float(np.count_nonzero(matrix)) / max(1, matrix.size)
    considered = forms.options(matrix, facts)
    sparsest = min((o.stored for o in considered), default=None)
    small = is_small_layer(cost_model, dense_s) and any(o.form == "csr" for o in considered)
    for option in forms.all_options(matrix, facts):
        row = {"kernel": option.label, "stored": round(option.stored, 4), "predicted_s": None, "verdict": ""}
        if option.stored >= MAX_STORED_FRACTION:
            row["verdict"] = f"not considered: stores {option.stored:.2f} of the weight (>= {MAX_STORED_FRACTION})"
        elif sparsest is not None and option.stored > CONSIDERED_STORED_RATIO * sparsest:
            row["verdict"] = (f"not considered: stores {option.stored:.2f}, more than {CONSIDERED_STORED_RATIO:g}x "
                              f"the sparsest option ({sparsest:.2f})")
        elif reason is not None:
            row["verdict"] = f"not allowed: {reason}"
        elif small and option.form != "csr":
            row["verdict"] = (f"not considered: the layer takes {dense_s * 1e6:.1f} us dense (below "
                              f"{SMALL_LAYER_SECONDS * 1e6:.0f} us, only CSR is asked)")
        elif dense_s is not None:
            t = cost_model.predict(option.form, m, n, k, density=density, **option.predict_kwargs(), kind=kind)
            row["predicted_s"] = t
            if t is not None:
                row["verdict"] = f"{dense_s / t:.2f}x vs dense"
            elif option.form == "bsr" and option.stored > 2.5 * density + 0.02:
                row["verdict"] = (f"not considered: its blocks would hold mostly zeros (stores {option.stored:.2f} "
                                  f"for density {density:.2f})")
            else:
                row["verdict"] = "no timing data for this kernel"
        options.append(row)
    timed = [(r["predicted_s"], r["kernel"]) for r in options if r["predicted_s"] is not None]
    if timed and dense_s is not None:
        best_t, best = min(timed)
        if best_t * MIN_SPEEDUP <= dense_s:
            chosen = best
            changes.append(f"{best} wins: predicted {dense_s / best_t:.2f}x over dense (the threshold is "
                           f"{MIN_SPEEDUP}x)")
        for r in options:
            if r["kernel"] == best:
                r["verdict"] += " (best)"
    if small and reason is None and any(r["kernel"] == "csr" and r["predicted_s"] is not None for r in options):
        chosen = "csr" if density <= SMALL_LAYER_CSR_DENSITY else "dense"
        changes.append(f"{small_layer_rule(dense_s)} (this weight: density {density:.2f})")
    if reason is None and dense_s is not None and m:
        d = _crossover(cost_model, forms.option_for("csr"), m, n, k, dense_s, kind)
        if d is None:
            changes.append(f"CSR does not reach {MIN_SPEEDUP}x over dense even at density 0.01 at M = {m}")
        else:
            changes.append(f"at density <= {d:.2f} CSR wins at M = {m} (this weight: {density:.2f})")
    elif reason is not None:
        changes.append(f"sparse kernels need: {reason} to change")
    for row in structured:
        if row["applies"] and row["predicted_s"] is not None and dense_s:
            changes.append(f"{row['form']}: predicted {dense_s / row['predicted_s']:.2f}x over dense "
                           "(compile rewrites it when that beats the sparse kernels too)")
    return Explanation(layer, node.op_type, (n, k), m, target, facts, structured, reason, dense_s, options, chosen,
                       changes, getattr(cost_model, "unit", "s"))
