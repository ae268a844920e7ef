"""Times dense and sparse kernels on this machine for the calibration table (:mod:`.measured`).

Dense and sparse are timed the same way: as one-op Relax modules through the real build (:func:`..build.build`)
and the VM, median of repeated calls; sparse weights are random with the requested structure and density.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sparseforge.ir.conv import ConvSpec, is_conv_key

from .. import _tvm
from ..build import build
from ..kernels import rules as kernel_rules
from ..schedules.relax_conv import _imap
from ..vm import VMRunner

relax = _tvm.relax

#: Trials per timing (median of trials, each the median of ``repeat`` calls).
TRIALS = 3


class KernelTimer:
    """Measures dense and sparse kernels for one target, both as one-op models through the same pipeline and VM.

    Dense layers are timed exactly as a compiled model runs them; sparse kernels as ``call_tir`` in the same kind
    of module (so both carry the same per-call VM cost). 1x1 convolutions use the NCHW{lanes}c layout the model
    runs in: the sparse kernel is timed on blocked input, and the layout transforms at the borders of the dense
    one-op module (which a real network does not pay per layer) are measured separately and subtracted.
    """

    def __init__(self, compile_target, kernel_target, repeat: int = 10):
        self.compile_target = compile_target
        self.kernel_target = kernel_target
        self.repeat = repeat

    def _module_runner(self, build_body, x_np) -> Callable[[], None]:
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType(tuple(x_np.shape), "float32"))
        with bb.function("main", [x]):
            with bb.dataflow():
                out = bb.emit_output(build_body(bb, x))
            bb.emit_func_output(out)
        runner = VMRunner(build(bb.get(), self.compile_target), threads=self.kernel_target.threads)
        return runner.bound([x_np])

    def time(self, fn: Callable[[], None], trials: int = TRIALS) -> float:
        """Seconds per call of ``fn``: the median over ``trials`` trials of the median of :attr:`repeat` calls
        (a trial taken while the machine was busy does not move it)."""
        return float(np.median([_median_seconds(fn, self.repeat) for _ in range(trials)]))

    def interleaved(self, fns: list[Callable[[], None]], trials: int = TRIALS) -> list[float]:
        """Seconds per call of each of ``fns``, timed in alternation (trial by trial), so a change in load hits
        them alike: per function the median over trials of the median of :attr:`repeat` calls."""
        samples: list[list[float]] = [[] for _ in fns]
        for _ in range(trials):
            for i, fn in enumerate(fns):
                samples[i].append(_median_seconds(fn, self.repeat))
        return [float(np.median(s)) for s in samples]

    @staticmethod
    def _image(m: int) -> tuple[int, int]:
        side = int(round(np.sqrt(max(m, 1))))
        return (side, m // side) if side * (m // side) == m else (1, m)

    def dense_runner(self, kind: str, m: int, n: int, k: int) -> Callable[[], None]:
        """The dense layer exactly as a compiled model runs it, built once, ready to call."""
        rng = np.random.default_rng(0)
        w = rng.standard_normal((n, k)).astype(np.float32)
        if is_conv_key(kind):
            return self._dense_conv_nchwc(w, m, ConvSpec.parse(kind))
        if kind == "conv1x1":
            return self._dense_conv_nchwc(w, m)
        x_np = rng.standard_normal((m, k)).astype(np.float32)
        return self._module_runner(lambda bb, x: bb.emit(relax.op.linear(x, relax.const(w))), x_np)

    def dense(self, kind: str, m: int, n: int, k: int) -> float:
        return self.time(self.dense_runner(kind, m, n, k))

    def _dense_conv_nchwc(self, w: np.ndarray, m: int, spec: ConvSpec | None = None) -> Callable[[], None]:
        """The dense conv (1x1 of ``m`` positions, or ``spec``) as it runs inside a network: blocked
        (NCHW{lanes}c) input and output.

        The module is ``blocked -> NCHW -> conv2d -> blocked``; the NCHWc pass runs the conv blocked and cancels
        both transforms against its own, so only the conv kernel (and the VM call) is timed.
        """
        lanes = self.compile_target.vector_lanes
        n, k = w.shape
        if spec is None:
            h, wd = self._image(m)
            spec = ConvSpec((1, k, h, wd), n, (1, 1))
        batch, k, h, wd = spec.x_shape
        w4 = w.reshape(n, spec.cin_per_group, *spec.kernel)

        def body(bb, xb):
            x = bb.emit(relax.op.layout_transform(xb, _imap(lambda a, cb, hh, ww, c: (a, cb * lanes + c, hh, ww), 5)))
            if -(-k // lanes) * lanes != k:
                x = bb.emit(relax.op.strided_slice(x, [1], [0], [k]))
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w4), strides=spec.strides, padding=spec.pads,
                                           dilation=spec.dilations, groups=spec.group))
            return bb.emit(relax.op.layout_transform(
                y, _imap(lambda a, c, hh, ww: (a, c // lanes, hh, ww, c % lanes), 4), pad_value=0.0))

        x_np = np.random.default_rng(0).standard_normal((batch, -(-k // lanes), h, wd, lanes)).astype(np.float32)
        return self._module_runner(body, x_np)

    def sparse_runner(self, variant: str, kind: str, m: int, n: int, k: int, density: float) -> Callable[[], None]:
        """The kernel the CPU kernel rules pick for a random weight of ``variant`` at ``density``, built once."""
        if is_conv_key(kind):
            x_shape = ConvSpec.parse(kind).x_shape
        else:
            x_shape = (1, k, *self._image(m)) if kind == "conv1x1" else (m, k)
        op = kernel_rules.calibration_op(variant, kind, x_shape, n, density, seed=1)
        kernel = kernel_rules.build(op, self.kernel_target, kernel_rules.CPU_RULES)

        def body(bb, x):
            gv = bb.add_func(kernel.func, kernel.name)
            consts = [relax.const(c) for c in kernel.constants]
            return bb.emit(relax.call_tir(gv, [x, *consts], relax.TensorType(kernel.out_shape, "float32")))

        x_np = np.random.default_rng(2).standard_normal(kernel.in_shape).astype(np.float32)
        return self._module_runner(body, x_np)

    def sparse(self, variant: str, kind: str, m: int, n: int, k: int, density: float) -> float:
        """Seconds of the kernel the CPU kernel rules pick for a random weight of ``variant`` at ``density``."""
        return self.time(self.sparse_runner(variant, kind, m, n, k, density))


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
