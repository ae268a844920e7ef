"""A per-CPU performance model of every kernel variant: fitted once from a fixed grid of shapes, predicts any shape.

For one variant (``"dense"``, ``"csr"``, ``"bsr4x1"``, ``"nm2:4"``, ...) and kind (``"matmul"``, ``"conv1x1"``)
the time of an ``[M, K] x [K, N]`` product whose weight stores ``S`` elements (``N K`` dense; ``density N K`` for
CSR; nonzero blocks times block size for BSR; ``N/M N K`` for N:M) is modelled as

    ``t = c0 + c1 M S + c2 S + c3 M (N + K)``

(a call overhead, the multiply-adds, streaming the stored weight, the activations in and out) with non-negative
coefficients fitted by non-negative least squares on relative errors, so predictions are monotone in density and
in every dimension: a sparser weight is never predicted slower. Points the first fit misses by far more than the
others (a measurement taken while the machine was busy) are dropped and the fit is repeated.

The grid (:data:`GRID`: 9 shapes per kind, from a 64 x 64 weight at one row, which pins the call overhead, to
2048 x 2048) is measured the first time a variant is needed (:class:`~.timer.KernelTimer`, about 0.3-1 s per
point) and cached as JSON next to the calibration table; ``sparseforge calibrate --fresh`` measures it again.
The model decides clear cases on its own; the decision pass measures close calls at the layer's exact shape
(:meth:`~.measured.MeasuredCostModel.refine`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.optimize

from sparseforge.ir import forms

from .cache import write_json

logger = logging.getLogger(__name__)

MODEL_VERSION = 5  # 5: dense convolutions fill their register tiles (kernels_dense.tile_rate: refit)
#: Shapes ``(M, N, K)`` per kind; sparse variants are measured at each shape and every density of
#: :data:`GRID_DENSITIES` (stored fraction), dense once per shape.
GRID: dict[str, tuple[tuple[int, int, int], ...]] = {
    "matmul": ((1, 64, 64), (1, 256, 1024), (1, 2048, 2048), (16, 1024, 256), (16, 768, 768), (128, 256, 1024),
               (128, 768, 768), (128, 2048, 512), (512, 512, 512)),
    "conv1x1": ((49, 32, 32), (196, 64, 64), (196, 512, 512), (784, 256, 64), (784, 64, 256), (3136, 64, 64),
                (3136, 128, 32), (49, 1024, 256), (49, 256, 1024)),
}
#: Densities CSR is measured at; the other variants whose stored fraction varies (BSR) at :data:`BLOCK_DENSITY`
#: only (the shapes already vary the stored elements; close calls are measured at the layer's shape anyway).
GRID_DENSITIES: tuple[float, ...] = (0.05, 0.3)
BLOCK_DENSITY = 0.15
#: A grid point whose fitted error (log ratio) exceeds this many times the median error, plus a floor, is dropped.
OUTLIER_FACTOR = 3.0
OUTLIER_FLOOR = 0.25


def features(m: int, n: int, k: int, stored: float) -> np.ndarray:
    """``[1, M S, S, M (N + K)]`` with ``S = stored * N * K`` (``stored``: fraction of the weight stored)."""
    s = float(stored) * n * k
    return np.array([1.0, m * s, s, m * (n + k)], np.float64)


@dataclasses.dataclass(frozen=True)
class Fit:
    """Coefficients of one variant and kind, the points kept, and the median relative error on them."""

    coef: tuple[float, ...]
    points: int
    dropped: int
    median_error: float

    def predict(self, m: int, n: int, k: int, stored: float) -> float:
        return float(features(m, n, k, stored) @ np.asarray(self.coef))


def fit(samples: list[tuple[int, int, int, float, float]]) -> Fit:
    """Fit ``[(M, N, K, stored, seconds), ...]``: non-negative least squares on relative errors, outliers dropped
    once."""
    x = np.array([features(m, n, k, s) for m, n, k, s, _ in samples])
    y = np.array([t for *_, t in samples], np.float64)
    keep = np.ones(len(y), bool)
    for _ in range(2):
        coef, _ = scipy.optimize.nnls(x[keep] / y[keep, None], np.ones(int(keep.sum())))
        error = np.abs(np.log(np.maximum(x @ coef, 1e-12) / y))
        limit = OUTLIER_FACTOR * float(np.median(error[keep])) + OUTLIER_FLOOR
        new_keep = error <= limit
        if new_keep.sum() < x.shape[1] + 1 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return Fit(tuple(float(c) for c in coef), int(keep.sum()), int((~keep).sum()),
               float(np.median(np.abs(np.log(np.maximum(x[keep] @ coef, 1e-12) / y[keep])))))


def grid_points(variant: str, kind: str) -> list[tuple[int, int, int, float]]:
    """The ``(M, N, K, stored fraction)`` points measured for a variant: :data:`GRID_DENSITIES` for sparse
    variants whose stored fraction varies, the fixed fraction for N:M, 1 for dense."""
    if variant == "dense":
        densities: tuple[float, ...] = (1.0,)
    else:
        option = forms.option_for(variant)
        if forms.get(option.form).fixed_stored:
            densities = (option.stored,)
        else:
            densities = GRID_DENSITIES if variant == "csr" else (BLOCK_DENSITY,)
    return [(m, n, k, d) for (m, n, k), d in itertools.product(GRID[kind], densities)]


@dataclasses.dataclass
class PerfModel:
    """Fits per ``"<variant>|<kind>"`` for one CPU and thread count, cached as JSON."""

    cpu: str
    threads: int
    fits: dict[str, Fit] = dataclasses.field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, cpu: str, threads: int, directory: Path) -> PerfModel:
        path = directory / "calibration" / f"perf-{cpu}-{threads}t.json"
        model = cls(cpu, threads, path=path)
        if path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == MODEL_VERSION:
                    model.fits = {key: Fit(tuple(v["coef"]), int(v["points"]), int(v["dropped"]),
                                           float(v["median_error"])) for key, v in data["fits"].items()}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("performance model %s is unreadable (%s); measuring its grid again", path, exc)
        return model

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, {"version": MODEL_VERSION, "cpu": self.cpu, "threads": self.threads,
                                   "fits": {k: dataclasses.asdict(v) for k, v in self.fits.items()}},
                       "performance model")

    def get(self, variant: str, kind: str) -> Fit | None:
        return self.fits.get(f"{variant}|{kind}")

    def fit_variant(self, variant: str, kind: str,
                    measure: Callable[[int, int, int, float], float | None],
                    progress: Callable[[int, int, str], None] | None = None) -> Fit | None:
        """Measure the grid of ``variant``/``kind`` with ``measure(M, N, K, stored) -> seconds`` (None: the kernel
        does not handle that shape), fit, cache; None when too few points could be measured."""
        points = grid_points(variant, kind)
        samples = []
        for i, (m, n, k, d) in enumerate(points):
            if progress is not None:
                progress(i, len(points), f"{variant} {kind} {m}x{n}x{k}" + ("" if variant == "dense" else
                                                                            f" at {d:g}"))
            seconds = measure(m, n, k, d)
            if seconds is not None and seconds > 0:
                samples.append((m, n, k, d, seconds))
        if progress is not None:
            progress(len(points), len(points), f"{variant} {kind}")
        if len(samples) < 6:
            return None
        result = fit(samples)
        self.fits[f"{variant}|{kind}"] = result
        self.save()
        return result
