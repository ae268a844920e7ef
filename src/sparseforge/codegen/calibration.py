"""Cost model fitted to kernel timings measured on the target.

For every layer shape ``(kind, M, N, K)`` the decision pass asks about, the table holds measured seconds of:

* the dense path exactly as a compiled model runs it (a one-op Relax module built by
  :func:`sparseforge.codegen.pipeline.build`, so the comparison is against our own dense schedules);
* each sparse kernel variant (CSR, BSR per block shape, N:M per pattern) at a grid of densities, on random
  weights of that shape (random positions, random blocks, or random N:M groups).

Predictions interpolate linearly in density between measured points (kernel time is close to linear in the number
of stored nonzeros) and extrapolate from the nearest two points at the ends. Missing entries are measured on
demand and the table is cached as JSON per CPU and thread count, under ``$SPARSEFORGE_CACHE`` (default
``~/.cache/sparseforge``); ``sparseforge calibrate`` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: Densities (element density for CSR, block density for BSR) measured per sparse variant.
DENSITY_GRID: tuple[float, ...] = (0.03, 0.1, 0.25, 0.5)
TABLE_VERSION = 4
#: Table entry of a kernel variant that cannot handle a shape.
UNSUPPORTED: list[list[float]] = [[-1.0, -1.0]]


def cache_dir() -> Path:
    return Path(os.environ.get("SPARSEFORGE_CACHE", Path.home() / ".cache" / "sparseforge"))


def variant_key(kernel: str, block: tuple[int, int] | None = None, nm: tuple[int, int] | None = None) -> str:
    if kernel == "bsr":
        return f"bsr{block[0]}x{block[1]}"
    if kernel == "nm":
        return f"nm{nm[0]}:{nm[1]}"
    return kernel


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


# ------------------------------------------------------------------------------------------ random weights


def random_weight(n: int, k: int, density: float, *, block: tuple[int, int] | None = None,
                  nm: tuple[int, int] | None = None, seed: int = 0) -> np.ndarray:
    """A random ``[n, k]`` float32 weight with the given structure and (element or block) density."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if nm is not None:
        keep_n, m = nm
        groups = -(-k // m)
        scores = rng.random((n, groups, m))
        mask = np.zeros((n, groups, m), bool)
        np.put_along_axis(mask, np.argsort(scores, axis=2)[:, :, :keep_n], True, axis=2)
        return w * mask.reshape(n, groups * m)[:, :k]
    if block is not None:
        br, bc = block
        nb, kb = -(-n // br), -(-k // bc)
        mask = rng.random((nb, kb)) < density
        mask[np.arange(nb), rng.integers(0, kb, nb)] |= density > 0  # no empty block rows at all densities
        return w * np.repeat(np.repeat(mask, br, 0), bc, 1)[:n, :k]
    return w * (rng.random((n, k)) < density)


# ------------------------------------------------------------------------------------------ measuring


class KernelTimer:
    """Measures dense and sparse kernels for one target, both as one-op models through the same pipeline and VM.

    Dense layers are timed exactly as a compiled model runs them; sparse kernels as ``call_tir`` in the same kind
    of module (so both carry the same per-call VM cost). 1x1 convolutions use the NCHW{lanes}c layout the model
    runs in: the sparse kernel is timed on blocked input, and the layout transforms at the borders of the dense
    one-op module (which a real network does not pay per layer) are measured separately and subtracted.
    """

    def __init__(self, compile_target, kernel_target, repeat: int = 20):
        self.compile_target = compile_target
        self.kernel_target = kernel_target
        self.repeat = repeat

    def _time_module(self, build_body, x_np) -> float:
        from . import _tvm
        from .pipeline import build, set_num_threads

        relax = _tvm.relax
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType(tuple(x_np.shape), "float32"))
        with bb.function("main", [x]):
            with bb.dataflow():
                out = bb.emit_output(build_body(bb, x))
            bb.emit_func_output(out)
        executable = build(bb.get(), self.compile_target)
        dev = _tvm.cpu_device()
        vm = relax.VirtualMachine(executable, dev)
        set_num_threads(self.kernel_target.threads)
        arg = _tvm.to_tvm_tensor(x_np, dev)
        return _median_seconds(lambda: vm["main"](arg), self.repeat)

    @staticmethod
    def _image(m: int) -> tuple[int, int]:
        side = int(round(np.sqrt(max(m, 1))))
        return (side, m // side) if side * (m // side) == m else (1, m)

    def dense(self, kind: str, m: int, n: int, k: int) -> float:
        from . import _tvm

        relax = _tvm.relax
        rng = np.random.default_rng(0)
        w = rng.standard_normal((n, k)).astype(np.float32)
        if kind == "conv1x1":
            return self._dense_conv_nchwc(w, m)
        x_np = rng.standard_normal((m, k)).astype(np.float32)
        return self._time_module(lambda bb, x: bb.emit(relax.op.linear(x, relax.const(w))), x_np)

    def _dense_conv_nchwc(self, w: np.ndarray, m: int) -> float:
        """The dense 1x1 conv as it runs inside a network: blocked (NCHW{lanes}c) input and output.

        The module is ``blocked -> NCHW -> conv2d -> blocked``; the NCHWc pass runs the conv blocked and cancels
        both transforms against its own, so only the conv kernel (and the VM call) is timed.
        """
        from . import _tvm
        from .schedules.relax_conv import _imap

        relax = _tvm.relax
        lanes = self.compile_target.vector_lanes
        n, k = w.shape
        h, wd = self._image(m)

        def body(bb, xb):
            x = bb.emit(relax.op.layout_transform(xb, _imap(lambda a, cb, hh, ww, c: (a, cb * lanes + c, hh, ww), 5)))
            if -(-k // lanes) * lanes != k:
                x = bb.emit(relax.op.strided_slice(x, [1], [0], [k]))
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w.reshape(n, k, 1, 1))))
            return bb.emit(relax.op.layout_transform(
                y, _imap(lambda a, c, hh, ww: (a, c // lanes, hh, ww, c % lanes), 4), pad_value=0.0))

        x_np = np.random.default_rng(0).standard_normal((1, -(-k // lanes), h, wd, lanes)).astype(np.float32)
        return self._time_module(body, x_np)

    def sparse(self, variant: str, kind: str, m: int, n: int, k: int, density: float) -> float:
        from . import _tvm
        from . import kernels as K

        relax = _tvm.relax
        block = nm = None
        if variant.startswith("bsr"):
            block = tuple(int(v) for v in variant[3:].split("x"))
        elif variant.startswith("nm"):
            nm = tuple(int(v) for v in variant[2:].split(":"))
        w = random_weight(n, k, density, block=block, nm=nm, seed=1)
        lanes = self.kernel_target.lanes
        if kind == "conv1x1":
            h, wd = self._image(m)
            kernel = K.sparse_conv1x1_nchwc(w, 1, h, wd, lanes=lanes, block=None if nm else block,
                                            target=self.kernel_target)
        elif variant == "csr":
            kernel = K.csr_matmul(w, m, target=self.kernel_target)
        elif block is not None:
            kernel = K.bsr_matmul(w, m, block=block, target=self.kernel_target)
        else:
            kernel = K.nm_matmul(w, m, n=nm[0], group=nm[1], target=self.kernel_target)

        def body(bb, x):
            gv = bb.add_func(kernel.func, kernel.name)
            consts = [relax.const(c) for c in kernel.constants]
            return bb.emit(relax.call_tir(gv, [x, *consts], relax.TensorType(kernel.out_shape, "float32")))

        x_np = np.random.default_rng(2).standard_normal(kernel.in_shape).astype(np.float32)
        return self._time_module(body, x_np)


def _median_seconds(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    deadline = time.perf_counter() + 5.0
    for i in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if i >= 4 and time.perf_counter() > deadline:
            break
    return float(np.median(times))


# ------------------------------------------------------------------------------------------ the cost model


class MeasuredCostModel:
    """:class:`~sparseforge.passes.sparsify.CostModel` backed by a :class:`CalibrationTable`.

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
        variant = variant_key(kernel, block, nm)
        if kernel == "bsr":
            blocks = -(-n // block[0]) * -(-k // block[1])
            effective = (nnz_blocks if nnz_blocks is not None else density * blocks) / blocks
            if effective > 2.5 * density + 0.02:
                return None  # blocks mostly hold zeros here: BSR would do wasted work
        elif kernel == "nm":
            effective = nm[0] / nm[1]
        else:
            effective = density
        grid = (effective,) if kernel == "nm" else DENSITY_GRID
        points = self._points(variant, kind, m, n, k, grid)
        return None if not points else interpolate(points, effective)


def cost_model_for(compile_target, kernel_target, *, measure: bool = True,
                   directory: Path | None = None) -> MeasuredCostModel:
    """The cached cost model of a target (the table is keyed by CPU name and thread count)."""
    cpu = f"{compile_target.mcpu}-{kernel_target.lanes}l"
    table = CalibrationTable.load(cpu, kernel_target.threads, directory)
    return MeasuredCostModel(table, KernelTimer(compile_target, kernel_target), measure=measure)


def calibrate_model(source, *, target: str = "x86", threads: int | None = None, fresh: bool = False,
                    input_shapes=None):
    """Measure every timing the decisions for ``source`` need; returns (table, decisions)."""
    from sparseforge.codegen.compile import resolve_targets
    from sparseforge.ir.frontend import load, require_static_shapes
    from sparseforge.passes import pipelines
    from sparseforge.passes.infra import Pipeline
    from sparseforge.passes.shrink_channels import ShrinkChannelsPass
    from sparseforge.passes.sparsify import DecideFormatPass, candidate

    backend, compile_target, kernel_target = resolve_targets(target, threads)
    model = load(source, input_shapes=input_shapes)
    require_static_shapes(model)
    Pipeline([*pipelines.canonicalize(), ShrinkChannelsPass()])(model)
    if not backend.runs_on_host:
        from sparseforge.errors import TargetError

        raise TargetError(f"cannot calibrate target '{target}' on this machine (its code does not run here)",
                          hint="decisions for it use published crossover densities; measure on a device with "
                               "`sparseforge bench --rpc`")
    cost_model = cost_model_for(compile_target, kernel_target)
    if fresh:
        for node in model.graph:
            cand = candidate(node)
            if cand is None:
                continue
            n, k = cand.view.shape
            suffix = f"|{cand.kind}|{cand.m}|{n}|{k}"
            for key in [key for key in cost_model.table.entries if key.endswith(suffix)]:
                del cost_model.table.entries[key]
    result = DecideFormatPass(cost_model)(model)
    return cost_model.table, result.report.details["decisions"]
