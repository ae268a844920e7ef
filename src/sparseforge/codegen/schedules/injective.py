"""Schedule rule for injective functions (elementwise, broadcast, transpose, reshape, pad, pack...).

Every intermediate block is inlined into the single output block, whose loop nest is flattened to
one loop over the output in row-major order (so writes are contiguous), cut into SIMD-wide
vectors and, when the output is large enough to pay for a thread-pool launch, run in parallel.
"""

from __future__ import annotations

from .. import _tvm
from ._rule import CPURule
from ._sched import inline_all_but, is_spatial, loop_extent, root_blocks

s_tir = _tvm.s_tir

#: Below this many output elements a parallel launch costs more than it saves.
MIN_PARALLEL_ELEMENTS = 16384


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
        schedule_flat_spatial(sch, outputs[0], lanes)
        return sch


def _dtype_bits(sch, block) -> int:
    writes = sch.get(block).writes
    return writes[0].source.dtype.bits if writes else 32


def _is_nested(sch, block) -> bool:
    """Blocks with child blocks (already structured code) are left to other rules."""
    return bool(sch.get_child_blocks(block))
