"""Cost model fitted to kernel timings measured on the target.

For every layer shape ``(kind, M, N, K)`` the decision pass asks about, the table holds measured seconds of:

* the dense path exactly as a compiled model runs it (a one-op Relax module built by
  :func:`sparseforge.codegen.build.build`, so the comparison is against our own dense schedules);
* each sparse kernel variant (CSR, BSR per block shape, N:M per pattern) at a grid of densities, on random
  weights of that shape (random positions, random blocks, or random N:M groups).

Predictions interpolate linearly in density between measured points (kernel time is close to linear in the number
of stored nonzeros) and extrapolate from the nearest two points at the ends. Missing entries are measured on
demand (:class:`~.timer.KernelTimer`) and the table is cached as JSON per CPU and thread count, under
``$SPARSEFORGE_CACHE`` (default ``~/.cache/sparseforge``); ``sparseforge calibrate`` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

from sparseforge.ir import forms

from .timer import KernelTimer

logger = logging.getLogger(__name__)

#: Densities (element density for CSR, block density for BSR) measured per sparse variant.
DENSITY_GRID: tuple[float, ...] = (0.03, 0.1, 0.25, 0.5)
TABLE_VERSION = 4
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump({"version": TABLE_VERSION, "cpu": self.cpu, "threads": self.threads,
                           "entries": self.entries}, f, indent=0)
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only home: keep the table in memory
            logger.warning("cannot save the calibration table to %s: %s", self.path, exc)


def interpolate(points: list[list[float]], density: float) -> float:
    """Piecewise-linear time at ``density`` (linear extrapolation from the two nearest points at the ends)."""
    pts = sorted(points)
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
    """:class:`~sparseforge.passes.decide.CostModel` backed by a :class:`CalibrationTable`.

    Entries missing from the table are measured on demand (unless ``measure=False``) and saved.
    """

    def __init__(self, table: CalibrationTable, timer: KernelTimer | None, *, measure: bool = True):
        self.table = table
        self.timer = timer
        self.measure_missing = measure and timer is not None
        self.measured = 0

    def _points(self, variant: str, kind: str, m: int, n: int, k: int, densities) -> list[list[float]] | None:
        key = CalibrationTable.key(variant, kind, m, n, k)
        points = self.table.entries.get(key)
        if points == UNSUPPORTED:
            return None
        have = {round(p[0], 6) for p in points or []}
        todo = [d for d in densities if round(d, 6) not in have]
        if todo and self.measure_missing:
            points = list(points or [])
            try:
                for d in todo:
                    seconds = (self.timer.dense(kind, m, n, k) if variant == "dense"
                               else self.timer.sparse(variant, kind, m, n, k, d))
                    points.append([d, seconds])
                    self.measured += 1
            except (ValueError, NotImplementedError) as exc:  # the kernel does not handle this shape
                logger.info("no %s kernel for %s %dx%dx%d: %s", variant, kind, m, n, k, exc)
                points = UNSUPPORTED
            self.table.entries[key] = points
            self.table.save()
        return None if not points or points == UNSUPPORTED else points

    def predict(self, kernel: str, m: int, n: int, k: int, *, density: float = 1.0,
                block: tuple[int, int] | None = None, nm: tuple[int, int] | None = None,
                nnz_blocks: int | None = None, kind: str = "matmul") -> float | None:
        if kernel == "dense":
            points = self._points("dense", kind, m, n, k, (1.0,))
            return None if not points else points[0][1]
        variant = forms.variant_key(kernel, block, nm)
        form = forms.get(kernel)
        effective = form.stored_fraction(n, k, density, block=block, nm=nm, nnz_blocks=nnz_blocks)
        if kernel == "bsr" and effective > 2.5 * density + 0.02:
            return None  # blocks mostly hold zeros here: BSR would do wasted work
        grid = (effective,) if form.fixed_stored else DENSITY_GRID
        points = self._points(variant, kind, m, n, k, grid)
        return None if not points else interpolate(points, effective)


def cost_model_for(compile_target, kernel_target, *, measure: bool = True,
                   directory: Path | None = None) -> MeasuredCostModel:
    """The cached cost model of a target (the table is keyed by CPU name and thread count)."""
    cpu = f"{compile_target.mcpu}-{kernel_target.lanes}l"
    table = CalibrationTable.load(cpu, kernel_target.threads, directory)
    return MeasuredCostModel(table, KernelTimer(compile_target, kernel_target), measure=measure)
