"""Schedule rule for injective functions (elementwise, broadcast, transpose, reshape, pad, pack...).

Every intermediate block is inlined into the single output block, whose loop nest is flattened to
one loop over the output in row-major order (so writes are contiguous), cut into SIMD-wide
vectors and, when the output is large enough to pay for a thread-pool launch, run in parallel.
A transpose that moves the input's innermost axis (a read strided by a whole row at every element)
is tiled instead: :data:`TILE` x :data:`TILE` tiles, so reads and writes both stay in cache lines.
"""

from __future__ import annotations

from .. import _tvm
from ._rule import CPURule
from ._sched import inline_all_but, is_spatial, loop_extent, root_blocks

s_tir = _tvm.s_tir
tirx = _tvm.tirx

#: Below this many output elements a parallel launch costs more than it saves.
MIN_PARALLEL_ELEMENTS = 16384
#: Tile edge of a transpose that moves the innermost axis (elements).
TILE = 16


def transposed_axis(sch, block) -> int | None:
    """For a block that copies one buffer with its axes permuted (``out[i0..in] = in[perm(i)]``): the output axis
    read by the input's innermost index, when that is not the output's innermost axis and both extents are at
    least :data:`TILE`; else None."""
    stmt = sch.get(block)
    if len(stmt.reads) != 1 or len(stmt.writes) != 1:
        return None
    iter_vars = [iv.var for iv in stmt.iter_vars]
    region = stmt.reads[0].region
    if not region or any(not isinstance(r.extent, tirx.IntImm) or int(r.extent) != 1 for r in region):
        return None
    analyzer = _tvm.Analyzer()
    for iv in stmt.iter_vars:
        analyzer.bind(iv.var, iv.dom)
    last = analyzer.simplify(region[-1].min)
    if isinstance(last, tirx.FloorDiv) and last.a.same_as(iter_vars[-1]) and isinstance(last.b, tirx.IntImm):
        return -int(last.b)  # a transpose then a reshape merging the moved axis: see schedule_tiled_transpose
    axis = next((i for i, v in enumerate(iter_vars) if v.same_as(last)), None)
    if axis is None or axis == len(iter_vars) - 1:
        return None
    extents = [iv.dom.extent for iv in stmt.iter_vars]
    if not all(isinstance(extents[i], tirx.IntImm) and int(extents[i]) >= TILE for i in (axis, -1)):
        return None
    return axis


def schedule_tiled_transpose(sch, block, axis: int, lanes: int) -> None:
    """Tile output axes ``axis`` and the last one :data:`TILE` x :data:`TILE`; vectorize the last, parallelize the
    loops outside the tiles. A negative ``axis`` ``-c`` (the input's innermost index is ``out_last // c``) first
    splits the output's last loop by ``c``, which makes its outer part the transposed axis."""
    loops = sch.get_loops(block)
    if axis < 0:
        factor = -axis
        extent = loop_extent(sch, loops[-1])
        if extent is None or extent % factor or factor < TILE or extent // factor < TILE:
            schedule_flat_spatial(sch, block, lanes)
            return
        loops = [*loops[:-1], *sch.split(loops[-1], [None, factor])]
        axis = len(loops) - 2
    outer_a, inner_a = sch.split(loops[axis], [None, TILE])
    outer_l, inner_l = sch.split(loops[-1], [None, TILE])
    rest = [lp for i, lp in enumerate(loops) if i not in (axis, len(loops) - 1)]
    sch.reorder(*rest, outer_a, outer_l, inner_a, inner_l)
    fused = sch.fuse(*rest, outer_a, outer_l)
    sch.parallel(fused)
    if TILE > lanes:
        _, vec = sch.split(inner_l, [None, lanes])
        sch.vectorize(vec)
    else:
        sch.vectorize(inner_l)


def schedule_flat_spatial(sch, block, lanes: int, min_parallel: int = MIN_PARALLEL_ELEMENTS) -> None:
    """Fuse all loops of a spatial ``block``, vectorize ``lanes`` wide and parallelize the rest."""
    loops = sch.get_loops(block)
    if not loops:
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    total = loop_extent(sch, fused)
    if total is None:
        outer, inner = sch.split(fused, [None, lanes])
        sch.vectorize(inner)
        sch.parallel(outer)
        return
    vec = lanes if total >= lanes else total
    # Prefer a vector width that divides the extent (no predicated tail) when one exists.
    if total % vec:
        divisors = [w for w in (lanes, lanes // 2, lanes // 4) if w >= 2 and total % w == 0]
        vec = divisors[0] if divisors else vec
    if total <= vec:
        if vec > 1:
            sch.vectorize(fused)
        return
    outer, inner = sch.split(fused, [None, vec])
    sch.vectorize(inner)
    if total >= min_parallel:
        sch.parallel(outer)


class Injective(CPURule):
    """Functions whose blocks are all spatial; vector width ``lanes`` (float32 lanes)."""

    def __init__(self, lanes: int):
        self.lanes = lanes

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        if not blocks or not all(is_spatial(sch, b) for b in blocks):
            return None
        outputs = sch.get_output_blocks(sch.get_sblock("root"))
        if len(outputs) != 1:
            return None
        if not inline_all_but(sch, [outputs[0]]):
            return None
        if any(_is_nested(sch, b) for b in root_blocks(sch)):
            return None
        bits = max((_dtype_bits(sch, outputs[0])), 8)
        lanes = max(1, self.lanes * 32 // bits)
        axis = transposed_axis(sch, outputs[0])
        if axis is not None:
            schedule_tiled_transpose(sch, outputs[0], axis, lanes)
        else:
            schedule_flat_spatial(sch, outputs[0], lanes)
        return sch


def _dtype_bits(sch, block) -> int:
    writes = sch.get(block).writes
    return writes[0].source.dtype.bits if writes else 32


def _is_nested(sch, block) -> bool:
    """Blocks with child blocks (already structured code) are left to other rules."""
    return bool(sch.get_child_blocks(block))
