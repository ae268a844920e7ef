"""Schedule rule for the packed dense kernel (:mod:`.kernels_dense`) and its fused epilogue.

Strategy (register-tiled GEMM micro-kernel, accumulators in registers):

* every fused elementwise epilogue (bias, GELU, residual add...) is inlined into the single output
  block, which is tiled ``MR x NR`` (rows x columns, from the block annotations);
* the accumulator block is computed per tile into a ``local`` ``MR x NR`` buffer with the
  reduction outermost, rows unrolled and columns as ``NR / lanes`` unrolled vectors: LLVM keeps
  the tile in vector registers and issues one broadcast + ``NR / lanes`` FMAs per row and k;
* the epilogue runs on the write-back of the tile (vectorized), so the output is written once;
* the (batch, column panel, row tile) loops are fused and run by ``T.parallel``.
"""

from __future__ import annotations

from .. import _tvm
from . import _contract as C
from ._rule import CPURule
from ._sched import flatten_block_axes, inline_all_but, reduction_vars, root_blocks, vectorize_inner

s_tir = _tvm.s_tir


class Dense(CPURule):
    """Matmul / Gemm / batched matmul lowered by ``PackDenseWeights``, with fused epilogues."""

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        mains = [b for b in root_blocks(sch) if C.block_kernel(sch.get(b)) == C.DENSE]
        if len(mains) != 1:
            return None
        main = mains[0]
        ann = sch.get(main)
        mr, nr = C.ann_int(ann, C.TILE_M, 1), C.ann_int(ann, C.TILE_N, 1)
        lanes = C.ann_int(ann, C.LANES, 1)
        batch = C.ann_int(ann, C.BATCH_DIMS, 0)
        if len(reduction_vars(sch, main)) != 1:
            return None
        outputs = sch.get_output_blocks(sch.get_sblock("root"))
        if len(outputs) != 1:
            return None
        out = outputs[0]
        if not inline_all_but(sch, [main, out]):
            return None

        ndim = len(sch.get_loops(out))
        if ndim < 2 + batch:
            return None
        if batch:
            b, m, j = flatten_block_axes(sch, out, 0, ndim - 2)
        else:
            b = None
            m, j = flatten_block_axes(sch, out, 0, ndim - 1)
        mo, mi = sch.split(m, [None, mr])
        jo, ji = sch.split(j, [None, nr])
        outer = [b, jo, mo] if b is not None else [jo, mo]
        sch.reorder(*outer, mi, ji)
        tile = sch.fuse(*outer)
        sch.compute_at(main, tile, preserve_unit_loops=True)
        sch.set_scope(main, 0, "local")

        # Micro-kernel: k outermost, rows unrolled, columns = unrolled vectors.
        *_, ci, cj, ck = sch.get_loops(main)
        sch.reorder(ck, ci, cj)
        cjo, cjv = sch.split(cj, [None, lanes])
        sch.unroll(ci)
        sch.unroll(cjo)
        sch.vectorize(cjv)
        sch.parallel(tile)
        init = sch.decompose_reduction(main, ck)
        *_, ii, ij = sch.get_loops(init)
        sch.unroll(ii)
        vectorize_inner(sch, ij, lanes, unroll_outer=True)

        # Epilogue on the tile write-back.
        vectorize_inner(sch, sch.get_loops(out)[-1], lanes)
        return sch
