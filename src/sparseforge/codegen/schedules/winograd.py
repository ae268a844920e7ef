"""Schedule rules for the Winograd F(2x2, 3x3) transforms (:mod:`.kernels_winograd`).

* input transform: per tile and vector of input channels, the 16 transformed values (``e = 4a + b`` unrolled, so
  every select over B^T's rows folds to two adds of loads LLVM shares), tiles in parallel;
* output transform: per 2x2 output tile and channel vector, the four outputs (row and column parity unrolled,
  the selects over A^T fold), with the fused epilogue (bias, activation, residual add) on the store; channel
  blocks x tile rows in parallel.

The GEMMs between them are the packed dense kernel and its rule (:class:`~.dense.Dense`).
"""

from __future__ import annotations

from .. import _tvm
from . import _contract as C
from ._rule import CPURule
from ._sched import inline_all_but, root_blocks

s_tir = _tvm.s_tir


def _only_block(sch, kernel: str):
    blocks = [b for b in root_blocks(sch) if C.block_kernel(sch.get(b)) == kernel]
    return blocks[0] if len(blocks) == 1 else None


class WinogradInput(CPURule):
    """``V[e, t, i]`` from the blocked input."""

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        block = _only_block(sch, C.WINOGRAD_INPUT)
        if block is None or len(root_blocks(sch)) != 1:
            return None
        lanes = C.ann_int(sch.get(block), C.LANES, 1)
        e, t, i = sch.get_loops(block)
        io, iv = sch.split(i, [None, lanes])
        sch.reorder(t, io, e, iv)
        sch.unroll(e)
        sch.vectorize(iv)
        sch.parallel(sch.fuse(t, io))
        return sch


class WinogradOutput(CPURule):
    """The blocked output of ``M`` with its fused epilogue."""

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        block = _only_block(sch, C.WINOGRAD_OUTPUT)
        if block is None:
            return None
        lanes = C.ann_int(sch.get(block), C.LANES, 1)
        outputs = sch.get_output_blocks(sch.get_sblock("root"))
        if len(outputs) != 1:
            return None
        out = outputs[0]
        if not inline_all_but(sch, [out]):
            return None
        loops = sch.get_loops(out)
        if len(loops) != 5 or int(sch.get(out).iter_vars[4].dom.extent) != lanes:
            return None
        n, o, y, x, v = loops
        ty, ry = sch.split(y, [None, 2])
        tx, rx = sch.split(x, [None, 2])
        sch.reorder(n, o, ty, tx, ry, rx, v)
        sch.unroll(ry)
        sch.unroll(rx)
        sch.vectorize(v)
        sch.parallel(sch.fuse(n, o, ty))
        return sch
