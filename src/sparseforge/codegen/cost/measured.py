"""Cost model of the target's kernels: a performance model for any shape, measurements at the layer's shape for close
calls.

* :class:`~.perf_model.PerfModel` predicts every kernel variant (dense, CSR, BSR per block shape, N:M per pattern)
  at any shape and density from a fixed grid measured once per CPU and thread count (:mod:`.perf_model`); a new
  model compiles without measuring anything once the variants it needs are fitted.
* :meth:`MeasuredCostModel.refine` measures the dense layer and one sparse kernel at a layer's exact shape and
  density, interleaved trial by trial (:meth:`~.timer.KernelTimer.interleaved`), and keeps them in the
  :class:`CalibrationTable`; the decision pass asks for it when the predicted speedup is close to its threshold.
  Measured entries win over the model; several measured densities of one shape are interpolated, made monotone
  first (a sparser weight is never slower).

Dense timings are of the dense path exactly as a compiled model runs it (a one-op Relax module through
:func:`sparseforge.codegen.build.build`), so the comparison is against our own dense schedules; sparse timings are of
random weights with the structure and density asked for. Tables and fits are cached as JSON per CPU and thread
count under ``$SPARSEFORGE_CACHE`` (default ``~/.cache/sparseforge``); ``sparseforge calibrate`` refreshes them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from sparseforge.ir import forms
from sparseforge.ir.conv import ConvSpec, is_conv_key
from sparseforge.ir.keys import step_record

from .cache import write_json
from .perf_model import PerfModel
from .timer import KernelTimer

logger = logging.getLogger(__name__)

_progress_logger = logging.getLogger("sparseforge.codegen.cost")


def log_progress(done: int, total: int, what: str) -> None:
    """The default progress callback: a :data:`~sparseforge.ir.keys.STEP_KEY` record."""
    step_record(_progress_logger, done, total, what)

TABLE_VERSION = 8  # 8: dense convolutions fill their register tiles (kernels_dense.tile_rate; measure again)
#: Table entry of a kernel variant that cannot handle a shape.
UNSUPPORTED: list[list[float]] = [[-1.0, -1.0]]


def cache_dir() -> Path:
    return Path(os.environ.get("SPARSEFORGE_CACHE", Path.home() / ".cache" / "sparseforge"))


@dataclasses.dataclass
class CalibrationTable:
    """``{"<variant>|<kind>|M|N|K": [[density, seconds], ...]}`` for one CPU and thread count."""

    cpu: str
    threads: int
    entries: dict[str, list[list[float]]] = dataclasses.field(default_factory=dict)
    path: Path | None = None

    @staticmethod
    def key(variant: str, kind: str, m: int, n: int, k: int) -> str:
        return f"{variant}|{kind}|{m}|{n}|{k}"

    @classmethod
    def load(cls, cpu: str, threads: int, directory: Path | None = None) -> CalibrationTable:
        path = (directory or cache_dir()) / "calibration" / f"{cpu}-{threads}t.json"
        table = cls(cpu, threads, path=path)
        if not path.exists():
            return table
        try:
            data = json.loads(path.read_text())
            if data.get("version") == TABLE_VERSION:
                table.entries = {k: [list(map(float, p)) for p in v] for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("calibration table %s is unreadable (%s); measuring again and overwriting it", path, exc)
        return table

    def save(self) -> None:
        if self.path is None:
            return
        write_json(self.path, {"version": TABLE_VERSION, "cpu": self.cpu, "threads": self.threads,
                               "entries": self.entries}, "calibration table")


def monotone(points: list[list[float]]) -> list[list[float]]:
    """``[[density, seconds], ...]`` sorted, each time lowered to the smallest time at any higher density (a
    sparser weight is never slower: a higher time there is noise)."""
    pts = sorted([list(p) for p in points])
    for i in range(len(pts) - 2, -1, -1):
        pts[i][1] = min(pts[i][1], pts[i + 1][1])
    return pts


def interpolate(points: list[list[float]], density: float) -> float:
    """Piecewise-linear time at ``density`` (linear extrapolation from the two nearest points at the ends)."""
    pts = monotone(points)
    if len(pts) == 1:
        return pts[0][1]
    if density <= pts[0][0]:
        (d0, t0), (d1, t1) = pts[0], pts[1]
    elif density >= pts[-1][0]:
        (d0, t0), (d1, t1) = pts[-2], pts[-1]
    else:
        i = next(i for i in range(1, len(pts)) if pts[i][0] >= density)
        (d0, t0), (d1, t1) = pts[i - 1], pts[i]
    if d1 == d0:
        return t0
    return max(t0 + (t1 - t0) * (density - d0) / (d1 - d0), 0.1 * min(t0, t1))


# ------------------------------------------------------------------------------------------ the cost model


class MeasuredCostModel:
    """:class:`~sparseforge.passes.decide.CostModel` of measured kernels: exact measurements from the
    :class:`CalibrationTable` where there are any, else the :class:`~.perf_model.PerfModel`.

    With ``measure`` (and a timer), a variant the performance model lacks is fitted on first use (its grid
    measured, ``progress(done, total, what)`` told), and :meth:`refine` measures; without, predictions come from
    what is cached (None where nothing is).
    """

    #: How the decision pass describes a prediction that was not measured at the layer's shape.
    prediction_source = "predicted by the performance model"

    def __init__(self, table: CalibrationTable, timer: KernelTimer | None, *, measure: bool = True,
                 perf: PerfModel | None = None, progress=None):
        self.table = table
        self.timer = timer
        self.measure_missing = measure and timer is not None
        self.perf = perf if perf is not None else PerfModel(table.cpu, table.threads)
        self.progress = progress if progress is not None else log_progress
        self.measured = 0
        self.refined = 0

    # -- measurements
    def _runner(self, variant: str, kind: str, m: int, n: int, k: int, density: float):
        return (self.timer.dense_runner(kind, m, n, k) if variant == "dense"
                else self.timer.sparse_runner(variant, kind, m, n, k, density))

    def _measure(self, variant: str, kind: str, m: int, n: int, k: int, density: float) -> float | None:
        try:
            seconds = self.timer.time(self._runner(variant, kind, m, n, k, density))
        except (ValueError, NotImplementedError) as exc:  # the kernel does not handle this shape
            logger.info("no %s kernel for %s %dx%dx%d: %s", variant, kind, m, n, k, exc)
            return None
        self.measured += 1
        return seconds

    def fit(self, variant: str, kind: str, *, fresh: bool = False):
        """The performance model's fit of ``variant``/``kind``, measuring its grid when missing (or ``fresh``)."""
        current = None if fresh else self.perf.get(variant, kind)
        if current is not None or not self.measure_missing:
            return current
        return self.perf.fit_variant(variant, kind, lambda m, n, k, d: self._measure(variant, kind, m, n, k, d),
                                     self.progress)

    # -- predictions
    def _exact(self, variant: str, kind: str, m: int, n: int, k: int, stored: float) -> float | None:
        points = self.table.entries.get(CalibrationTable.key(variant, kind, m, n, k))
        if not points or points == UNSUPPORTED:
            return None
        if variant == "dense":
            return points[0][1]
        if len(points) >= 2:
            return interpolate(points, stored)
        return points[0][1] if abs(points[0][0] - stored) < 1e-6 else None

    def _unsupported(self, variant: str, kind: str, m: int, n: int, k: int) -> bool:
        return self.table.entries.get(CalibrationTable.key(variant, kind, m, n, k)) == UNSUPPORTED

    def predict(self, kernel: str, m: int, n: int, k: int, *, density: float = 1.0,
                block: tuple[int, int] | None = None, nm: tuple[int, int] | None = None,
                nnz_blocks: int | None = None, kind: str = "matmul") -> float | None:
        variant, stored = self._variant(kernel, n, k, density, block, nm, nnz_blocks)
        if stored is None or self._unsupported(variant, kind, m, n, k):
            return None
        exact = self._exact(variant, kind, m, n, k, stored)
        if exact is not None:
            return exact
        fit_kind, fit_m = model_shape(variant, kind, m)
        fitted = self.fit(variant, fit_kind)
        return None if fitted is None else fitted.predict(fit_m, n, k, stored)

    @staticmethod
    def _variant(kernel, n, k, density, block, nm, nnz_blocks) -> tuple[str, float | None]:
        if kernel == "dense":
            return "dense", 1.0
        form = forms.get(kernel)
        stored = form.stored_fraction(n, k, density, block=block, nm=nm, nnz_blocks=nnz_blocks)
        if kernel == "bsr" and stored > 2.5 * density + 0.02:
            return forms.variant_key(kernel, block, nm), None  # blocks mostly hold zeros: wasted work
        return forms.variant_key(kernel, block, nm), stored

    def measured_at(self, kernel: str, m: int, n: int, k: int, *, density: float = 1.0, block=None, nm=None,
                    nnz_blocks=None, kind: str = "matmul") -> bool:
        """Whether both this kernel and dense were measured at this exact shape (and stored fraction)."""
        variant, stored = self._variant(kernel, n, k, density, block, nm, nnz_blocks)
        return (stored is not None and self._exact(variant, kind, m, n, k, stored) is not None
                and self._exact("dense", kind, m, n, k, 1.0) is not None)

    def refine(self, kernel: str, m: int, n: int, k: int, *, density: float = 1.0, block=None, nm=None,
               nnz_blocks=None, kind: str = "matmul") -> tuple[float, float] | None:
        """``(dense, kernel)`` seconds measured at this exact shape and stored fraction, interleaved trial by trial
        (cached: a second call measures nothing); None when nothing can be measured."""
        variant, stored = self._variant(kernel, n, k, density, block, nm, nnz_blocks)
        if stored is None:
            return None
        dense, sparse = self._exact("dense", kind, m, n, k, 1.0), self._exact(variant, kind, m, n, k, stored)
        if dense is not None and sparse is not None:
            return dense, sparse
        if not self.measure_missing:
            return None
        try:
            sparse_runner = self._runner(variant, kind, m, n, k, stored)
        except (ValueError, NotImplementedError) as exc:  # remembered: predict() stops offering it here
            logger.info("no %s kernel for %s %dx%dx%d: %s", variant, kind, m, n, k, exc)
            self.table.entries[CalibrationTable.key(variant, kind, m, n, k)] = UNSUPPORTED
            self.table.save()
            return None
        runners = [self._runner("dense", kind, m, n, k, 1.0), sparse_runner]
        self.progress(0, 1, f"{variant} vs dense at {kind} {m}x{n}x{k}")
        dense, sparse = self.timer.interleaved(runners)
        self.progress(1, 1, f"{variant} vs dense at {kind} {m}x{n}x{k}")
        self.measured += 2
        self.refined += 1
        self.table.entries[CalibrationTable.key("dense", kind, m, n, k)] = [[1.0, dense]]
        key = CalibrationTable.key(variant, kind, m, n, k)
        points = [p for p in self.table.entries.get(key) or [] if abs(p[0] - stored) >= 1e-6 and p != [-1.0, -1.0]]
        self.table.entries[key] = [*points, [stored, sparse]]
        self.table.save()
        return dense, sparse


def model_shape(variant: str, kind: str, m: int) -> tuple[str, int]:
    """The performance-model kind and M that predict ``kind`` at ``m``: a k x k conv (a geometry key) is predicted
    as a 1x1 conv with K = Cin/group * kh * kw; the sparse direct kernel also sweeps the ``Wq - OW`` dropped
    columns of every output row (:mod:`~sparseforge.codegen.kernels.conv_direct`)."""
    if not is_conv_key(kind):
        return kind, m
    if variant == "dense":
        return "conv1x1", m
    spec = ConvSpec.parse(kind)
    oh, ow = spec.out_hw
    extra = ((spec.kernel[1] - 1) * spec.dilations[1]) // spec.strides[1]
    return "conv1x1", spec.x_shape[0] * oh * (ow + extra)


def cost_model_for(compile_target, kernel_target, *, measure: bool = True, directory: Path | None = None,
                   progress=None) -> MeasuredCostModel:
    """The cached cost model of a target (table and performance model keyed by CPU name and thread count)."""
    cpu = f"{compile_target.mcpu}-{kernel_target.lanes}l"
    table = CalibrationTable.load(cpu, kernel_target.threads, directory)
    perf = PerfModel.load(cpu, kernel_target.threads, directory or cache_dir())
    return MeasuredCostModel(table, KernelTimer(compile_target, kernel_target), measure=measure, perf=perf,
                             progress=progress)
