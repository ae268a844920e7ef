"""Whether a structured form pays, from a cost model: the per-layer decision of the structured rewrites.

A structured rewrite turns one ``[M, K] x [K, N]`` product into smaller ones (:class:`Product`: ``batch`` products
of ``[m, k] x [k, n]``). With a cost model (``compile``: measured on x86, rules elsewhere), :func:`choose` predicts
the dense layer, the best sparse kernel for the weight as it is (a block-diagonal weight is also a sparse one) and
the structured form (the sum of its products' dense predictions; gathers, transposes and concatenations are not
counted), and keeps the structured form only when it beats both by ``min_speedup``. Without one (``export``, whose
output ONNX Runtime runs), the rewrites' own operation-count rules decide.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparseforge.ir import forms

#: The structured form must be predicted this much faster than the best alternative.
MIN_SPEEDUP = 1.1


@dataclasses.dataclass(frozen=True)
class Product:
    """``batch`` dense products of ``[m, k] x [k, n]``."""

    m: int
    n: int
    k: int
    batch: int = 1


@dataclasses.dataclass(frozen=True)
class Choice:
    """The outcome: ``structured`` True when the form is kept; ``why`` says what was compared."""

    structured: bool
    why: str


def rows(x_shape) -> int | None:
    """``M``, the rows of the product, from a static activation shape ``[..., K]`` (None if not static)."""
    if x_shape is None or not x_shape.is_static():
        return None
    dims = [int(d) for d in x_shape]
    return int(np.prod(dims[:-1], dtype=np.int64)) if len(dims) > 1 else 1


def _show(t: float, relative: bool) -> str:
    return f"{t:.3g}" if relative else f"{t * 1e3:.3f} ms"


def choose(cost_model, m: int | None, matrix: np.ndarray, products: list[Product], label: str, *,
           min_speedup: float = MIN_SPEEDUP) -> Choice:
    """Keep the structured form ``label`` (made of ``products``) for the ``[N, K]`` weight ``matrix`` with ``m``
    rows, or the dense layer / its best sparse kernel, whichever ``cost_model`` predicts fastest."""
    if cost_model is None:
        return Choice(True, "no cost model: the operation count decides")
    if m is None:
        return Choice(True, "the activation shape is not static: the operation count decides")
    n, k = matrix.shape
    dense = cost_model.predict("dense", m, n, k)
    parts = [cost_model.predict("dense", p.m, p.n, p.k) for p in products]
    if dense is None or any(t is None for t in parts):
        return Choice(True, "no timing data for these shapes: the operation count decides")
    structured = sum(t * p.batch for t, p in zip(parts, products))
    relative = getattr(cost_model, "unit", "s") == "relative"
    best_name, best = "dense", dense
    for option in forms.options(matrix):
        t = cost_model.predict(option.form, m, n, k, density=float(np.count_nonzero(matrix)) / matrix.size,
                               **option.predict_kwargs())
        if t is not None and t < best:
            best_name, best = option.label, t
    compared = f"{label} predicted {_show(structured, relative)} vs {best_name} {_show(best, relative)}"
    if structured * min_speedup <= best:
        return Choice(True, f"{compared} ({best / structured:.1f}x)")
    return Choice(False, f"{compared}: not {min_speedup:g}x faster, left to the per-layer decision")


def cost_note(cost_model, choice: Choice | None) -> str:
    """``"; <what was compared>"`` for a rewrite's message when a cost model decided, else ``""``."""
    return f"; {choice.why}" if cost_model is not None and choice is not None else ""
