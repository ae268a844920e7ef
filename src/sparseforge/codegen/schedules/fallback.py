"""Last-resort schedule rule: correct for any prim_func, parallel and vectorized where legal.

Spatial blocks are inlined where possible; each remaining top-level block gets its leading
spatial loops fused and run in parallel (when large enough), its reduction loops moved inside,
and, for purely spatial blocks, the innermost loop vectorized. Functions that cannot be put in
the normal form (opaque blocks, data-dependent loops) are returned unscheduled but still marked
as handled, so they compile as plain serial loops.
"""

from __future__ import annotations

import math

from .. import _tvm
from ._rule import CPURule
from ._sched import loop_extent
from .injective import MIN_PARALLEL_ELEMENTS

s_tir = _tvm.s_tir
dlight = _tvm.dlight
tirx = _tvm.tirx


class Fallback(CPURule):
    """Any function on an LLVM target; ``lanes`` = float32 SIMD lanes."""

    def __init__(self, lanes: int):
        self.lanes = lanes

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        infos = dlight.normalize_prim_func(sch)
        if infos is None:
            return sch  # leave as written; still correct
        infos = dlight.try_inline(sch, infos)
        for info in infos:
            try:
                self._schedule_block(sch, info)
            except (RuntimeError, ValueError):  # a primitive refused: keep this block as it is
                continue
        return sch

    def _schedule_block(self, sch, info) -> None:
        kinds = info.dom_kind()
        if set(kinds) - {"S", "R"}:
            return
        loops = [it.loop_rv for it in info.iters]
        s_loops = [lp for lp, k in zip(loops, kinds) if k == "S"]
        r_loops = [lp for lp, k in zip(loops, kinds) if k == "R"]
        if not s_loops:
            return
        sch.reorder(*s_loops, *r_loops)
        if not r_loops:
            fused = sch.fuse(*s_loops) if len(s_loops) > 1 else s_loops[0]
            total = loop_extent(sch, fused)
            if total is not None and total <= self.lanes:
                if total > 1:
                    sch.vectorize(fused)
                return
            outer, inner = sch.split(fused, [None, self.lanes])
            sch.vectorize(inner)
            if total is None or total >= MIN_PARALLEL_ELEMENTS:
                sch.parallel(outer)
            return
        fused = sch.fuse(*s_loops) if len(s_loops) > 1 else s_loops[0]
        spatial = loop_extent(sch, fused)
        reduce = math.prod(loop_extent(sch, lp) or 1 for lp in r_loops)
        if spatial is None or spatial > 1 and spatial * reduce >= MIN_PARALLEL_ELEMENTS:
            sch.parallel(fused)
