"""Schedule rule for the NCHWc convolution kernel (:func:`.kernels_conv.conv2d_nchwc`).

The output pixels (H x W flattened) and channel blocks are tiled ``MR`` pixels x ``OB`` blocks of
``lanes`` channels; each tile is accumulated in registers over (input channel, kh, kw) with one
broadcast input value and ``OB`` weight vectors per step, then written back through the fused
epilogue (bias, clip, residual add...). Tiles run in parallel. Spatial zero padding of a blocked
input is a padded copy written once (in parallel, vectorized) before the tiles: a bounds check in
every tap halved the throughput of 3x3 layers with 256-512 channels (25-32 against 49-66 GFLOP/s
on Zen 3). A plain NCHW input (the network's first layer: few channels, scalar lanes) keeps the
bounds check inlined, which was 2.5x faster there than a copy.
"""

from __future__ import annotations

from .. import _tvm
from . import _contract as C
from ._rule import CPURule
from ._sched import flatten_block_axes, inline_all_but, loop_extent, root_blocks, vectorize_inner

s_tir = _tvm.s_tir


def find_kernel_blocks(sch, kernel: str):
    """``(main, pads)``: the annotated main block of ``kernel`` and the pad producers, or ``(None, [])``."""
    blocks = root_blocks(sch)
    mains = [b for b in blocks if C.block_kernel(sch.get(b)) == kernel]
    pads = [b for b in blocks if C.block_kernel(sch.get(b)) == C.PAD]
    return (mains[0], pads) if len(mains) == 1 else (None, [])


def prepare_output(sch, main, keep):
    """Inline the epilogue into the single output block; returns that block or None."""
    outputs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(outputs) != 1 or not inline_all_but(sch, [main, outputs[0], *keep]):
        return None
    return outputs[0]


def padded_copy(sch, pad) -> bool:
    """True when ``pad`` (a spatial zero-pad block) should be materialized: its input is blocked (5-D)."""
    return len(sch.get(pad).writes[0].source.shape) == 5


class Conv2dNCHWc(CPURule):
    """Grouped-1 NCHWc convolutions (1x1, kxk, strided) with fused epilogues."""

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        main, pads = find_kernel_blocks(sch, C.CONV2D_NCHWC)
        if main is None:
            return None
        ann = sch.get(main)
        mr, ob = C.ann_int(ann, C.TILE_M, 1), C.ann_int(ann, C.TILE_N, 1)
        lanes = C.ann_int(ann, C.LANES, 1)
        copied = [pad for pad in pads if padded_copy(sch, pad)]
        for pad in pads:
            if pad not in copied:
                sch.compute_inline(pad)
        out = prepare_output(sch, main, copied)
        if out is None:
            return None
        if len(sch.get_loops(out)) != 5:
            return None
        for pad in copied:
            n_, cb_, *_, pv = sch.get_loops(pad)
            sch.parallel(sch.fuse(n_, cb_))
            vectorize_inner(sch, pv, lanes)
        out_h, out_w = (int(iv.dom.extent) for iv in sch.get(out).iter_vars[2:4])
        if out_h * out_w > int(sch.get(main).iter_vars[2].dom.extent):
            return broadcast_epilogue(sch, main, out, lanes)
        n, ocb, p, oc = flatten_block_axes(sch, out, 2, 4)
        po, pi = sch.split(p, [None, mr])
        bo, bi = sch.split(ocb, [None, ob])
        sch.reorder(n, bo, po, bi, pi, oc)
        tile = sch.fuse(n, bo, po)
        sch.compute_at(main, tile, preserve_unit_loops=True)
        sch.set_scope(main, 0, "local")

        *_, cb, cp, cv, rc, rh, rw = sch.get_loops(main)
        # Pixels outside channel blocks: one broadcast live at a time next to the OB weight vectors
        # and MR*OB accumulators (pixels inside would need MR broadcasts live: register spills).
        sch.reorder(rc, rh, rw, cp, cb, cv)
        if loop_extent(sch, rh) * loop_extent(sch, rw) == 1 and loop_extent(sch, rc) % lanes == 0:
            # 1x1: one input-channel block per step, unrolled (constant offsets into the NCHWc input: 1.4-1.7x on
            # the projections of MobileNetV2, e.g. 576->96 at 14x14). On k x k it was no faster (0.9-1.1x).
            rc, rci = sch.split(rc, [None, lanes])
            sch.unroll(rci)
        sch.unroll(rh)
        sch.unroll(rw)
        sch.unroll(cb)
        sch.unroll(cp)
        sch.vectorize(cv)
        sch.parallel(tile)
        init = sch.decompose_reduction(main, rc)
        *_, ib, ip, iv = sch.get_loops(init)
        sch.unroll(ib)
        sch.unroll(ip)
        sch.vectorize(iv)
        *_, wv = sch.get_loops(out)
        vectorize_inner(sch, wv, lanes)
        return sch


def broadcast_epilogue(sch, main, out, lanes: int):
    """A convolution whose epilogue broadcasts it over a larger image (a squeeze-and-excitation scale: 1x1 conv
    on ``[1, C, 1, 1]``, sigmoid, times the ``[1, C, H, W]`` features): the few accumulators once, in parallel
    over channel blocks, then the epilogue as a vectorized elementwise loop. (Tiling the epilogue and computing
    the accumulators per tile would recompute the convolution for every tile of the image.)"""
    n, o, p, v, rc, rh, rw = sch.get_loops(main)
    sch.reorder(n, o, p, rc, rh, rw, v)
    sch.parallel(sch.fuse(n, o))
    sch.vectorize(v)
    sch.decompose_reduction(main, rc)
    n, ocb, h, *_, wv = sch.get_loops(out)
    sch.parallel(sch.fuse(n, ocb, h))
    vectorize_inner(sch, wv, lanes)
    return sch
