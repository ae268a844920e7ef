"""Schedule rule for the NCHWc depthwise convolution (:func:`.kernels_conv.depthwise_nchwc`).

Each register tile is ``MR`` output columns x one vector of ``lanes`` channels; the ``KH x KW``
taps are unrolled, so every output vector costs ``KH*KW`` loads and FMAs whatever the stride
(the channel vector is contiguous in NCHWc). Rows of (batch, channel block, output row) run in
parallel, a band of output rows per task; the fused epilogue is applied on the write-back. Zero
padding is never materialized for the whole tensor: wide inputs bounds-check each tap (the
branches are well predicted), narrow ones copy the padded rows of one band into L1.
"""

from __future__ import annotations

from .. import _tvm
from . import _contract as C
from ._rule import CPURule
from ._sched import vectorize_inner
from .conv2d import find_kernel_blocks, prepare_output

s_tir = _tvm.s_tir


#: Bytes of padded input rows a band may keep (about half of a 48 KiB L1).
BAND_BYTES = 24 * 1024
#: From this padded input width on, bounds checks in the taps beat copying padded rows
#: (measured on Zen 5: 2.2x faster at 112 wide, break-even near 28, copying wins at 14 and 7).
INLINE_PAD_MIN_WIDTH = 30


class DepthwiseNCHWc(CPURule):
    """Depthwise (channel multiplier 1) NCHWc convolutions with fused epilogues."""

    @staticmethod
    def _padded_width(sch, pad) -> int:
        return int(sch.get(pad).writes[0].source.shape[3])

    @staticmethod
    def _band_rows(sch, main, pads) -> int:
        """Output rows per parallel task: the most (dividing OH) whose padded input rows fit BAND_BYTES."""
        out_rows = int(sch.get(main).iter_vars[2].dom.extent)
        if not pads:
            return 1
        pad_shape = [int(x) for x in sch.get(pads[0]).writes[0].source.shape]
        row_bytes = pad_shape[3] * pad_shape[4] * 4
        in_rows = pad_shape[2]
        stride = max(1, (in_rows - 1) // max(1, out_rows))  # approximate vertical stride
        kh = in_rows - (out_rows - 1) * stride
        best = 1
        for band in range(1, out_rows + 1):
            if out_rows % band == 0 and ((band - 1) * stride + kh) * row_bytes <= BAND_BYTES:
                best = band
        return best

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        main, pads = find_kernel_blocks(sch, C.DEPTHWISE_NCHWC)
        if main is None:
            return None
        ann = sch.get(main)
        mr, lanes = C.ann_int(ann, C.TILE_M, 1), C.ann_int(ann, C.LANES, 1)
        if pads and self._padded_width(sch, pads[0]) >= INLINE_PAD_MIN_WIDTH:
            for pad in pads:
                sch.compute_inline(pad)
            pads = []
        out = prepare_output(sch, main, pads)
        if out is None:
            return None
        loops = sch.get_loops(out)
        if len(loops) != 5:
            return None
        n, cb, oh, ow, v = loops
        band = self._band_rows(sch, main, pads)
        ho, hi = sch.split(oh, [None, band])
        wo, wi = sch.split(ow, [None, mr])
        sch.reorder(n, cb, ho, hi, wo, wi, v)
        rows = sch.fuse(n, cb, ho)
        sch.compute_at(main, wo, preserve_unit_loops=True)
        sch.set_scope(main, 0, "local")
        *_, cw, cv, rh, rw = sch.get_loops(main)
        sch.reorder(rh, rw, cw, cv)
        sch.unroll(rh)
        sch.unroll(rw)
        sch.unroll(cw)
        sch.vectorize(cv)
        sch.parallel(rows)
        init = sch.decompose_reduction(main, rh)
        *_, iw, iv = sch.get_loops(init)
        sch.unroll(iw)
        sch.vectorize(iv)
        *_, wv = sch.get_loops(out)
        vectorize_inner(sch, wv, lanes)
        for pad in pads:
            # Pad only the KH input rows one output row needs, into an L1-resident buffer,
            # instead of a padded copy of the whole tensor (depthwise is memory bound).
            sch.compute_at(pad, rows, preserve_unit_loops=True)
            *_, pv = sch.get_loops(pad)
            sch.vectorize(pv)
        return sch
