"""Schedule rule for row-wise reductions: softmax, layer norm, mean/sum, global pooling.

Accepted shape: every block starts with the same leading spatial axes (the "rows"), reduction
blocks reduce trailing axes. The rows are fused and run in parallel; every other block is
computed per row (intermediates stay in L1). Two kinds of reduction block are vectorized:

* inner reductions (the reduced axes are the contiguous ones: softmax, layer norm): the reduction
  is split ``lanes`` wide and ``rfactor``-ed into a ``lanes``-wide partial accumulator that lives
  in a vector register, then summed horizontally once per row;
* outer reductions (the block reads a spatial axis contiguously, e.g. NCHWc pooling over H, W):
  that axis is kept out of the parallel rows, moved inside the reduction loops and vectorized.

Spatial producers that are cheap to recompute (softmax's ``x - max``, a pooling window's zero
padding) are inlined into their consumers.

Elementwise blocks are vectorized on their innermost axis.
"""

from __future__ import annotations

from .. import _tvm
from ._rule import CPURule
from ._sched import loop_extent

s_tir = _tvm.s_tir
dlight = _tvm.dlight
tirx = _tvm.tirx


def _leading_s(kind: str) -> int:
    return len(kind) - len(kind.lstrip("S"))


class RowReduction(CPURule):
    """Softmax / layer norm / mean-style functions; ``lanes`` = float32 SIMD lanes."""

    def __init__(self, lanes: int):
        self.lanes = lanes

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        infos = dlight.normalize_prim_func(sch)
        if not infos or not any(b.is_reduction() for b in infos):
            return None
        if len(sch.get_output_blocks(sch.get_sblock("root"))) != 1:
            return None
        if any(set(b.dom_kind()) - {"S", "R"} for b in infos):
            return None
        infos = self._inline_producers(sch, infos)
        kinds = [b.dom_kind() for b in infos]
        lead = min(_leading_s(k) for k in kinds)
        # Outer reduction: keep the contiguous spatial axis out of the parallel rows.
        vec_axis = self._outer_axis(sch, infos)
        if vec_axis is not None:
            lead = min(lead, vec_axis)
        elif not infos[-1].is_injective():
            return None
        if lead < 1:
            return None
        extents = [tuple(_const(it.dom) for it in b.iters[:lead]) for b in infos]
        if any(e != extents[-1] or None in e for e in extents):
            return None

        # rfactor inner reductions while they are still at the root (lanes-wide partial sums).
        order = []
        rf_blocks = []
        writebacks = []  # horizontal sums of the rf partials: lanes iterations, left scalar
        for info in infos:
            rf = self._rfactor(sch, info.block_rv, lead) if info.is_reduction() else None
            if rf is not None:
                rf_blocks.append(sch.get_sref(rf))
                writebacks.append(sch.get_sref(info.block_rv))
                order.append(rf)
            order.append(info.block_rv)

        last = order[-1]
        loops = sch.get_loops(last)
        rows = sch.fuse(*loops[:lead]) if lead > 1 else loops[0]
        for block in reversed(order[:-1]):
            sch.compute_at(block, rows, preserve_unit_loops=True)
        sch.parallel(rows)

        for block in order:
            iter_types = [iv.iter_type for iv in sch.get(block).iter_vars]
            if any(sch.get_sref(block).same_as(r) for r in rf_blocks):
                self._vectorize_rf(sch, block)
            elif any(sch.get_sref(block).same_as(w) for w in writebacks):
                continue
            elif tirx.IterVar.CommReduce in iter_types:
                self._vectorize_outer_reduction(sch, block, lead)
            else:
                self._vectorize_spatial(sch, block)
        return sch

    @staticmethod
    def _inline_producers(sch, infos):
        """Inline spatial intermediates that are cheap to recompute: those whose consumers are all
        spatial (softmax's ``x - max``) and those on another domain than the output (a pooling
        window's zero padding). Returns the remaining block infos."""
        out_dom = [_const(it.dom) for it in infos[-1].iters]
        kept = []
        for info in infos[:-1]:
            consumers = sch.get_consumers(info.block_rv)
            spatial_consumers = consumers and all(
                all(iv.iter_type == tirx.IterVar.DataPar for iv in sch.get(c).iter_vars) for c in consumers
            )
            other_domain = [_const(it.dom) for it in info.iters][:2] != out_dom[:2]
            if info.is_injective() and (spatial_consumers or other_domain):
                try:
                    sch.compute_inline(info.block_rv)
                    continue
                except (RuntimeError, ValueError):
                    pass
            kept.append(info)
        return kept + infos[-1:]

    @staticmethod
    def _outer_axis(sch, infos) -> int | None:
        """Iter position of the spatial axis a reduction block reads contiguously, if any.

        Only reads indexed by a reduction variable (the reduced input) are considered.
        """
        for info in infos:
            if not info.is_reduction():
                continue
            block = sch.get(info.block_rv)
            ivs = list(block.iter_vars)
            reduce_vars = [iv.var for iv in ivs if iv.iter_type == tirx.IterVar.CommReduce]
            for region in block.reads:
                mins = [r.min for r in region.region]
                used = [v for m in mins for v in tirx.analysis.undefined_vars(m, [])]
                if not mins or not any(any(u.same_as(v) for v in reduce_vars) for u in used):
                    continue
                for pos, iv in enumerate(ivs):
                    if iv.iter_type == tirx.IterVar.DataPar and iv.var.same_as(mins[-1]):
                        return pos
        return None

    def _vectorize_spatial(self, sch, block) -> None:
        inner = sch.get_loops(block)[1:]  # everything sits under the fused row loop
        if not inner:
            return
        loop = sch.fuse(*inner) if len(inner) > 1 else inner[0]
        ext = loop_extent(sch, loop)
        if ext is None or ext < 2:
            return
        if ext <= self.lanes:
            sch.vectorize(loop)
            return
        _, vec = sch.split(loop, [None, self.lanes])
        sch.vectorize(vec)

    def _rfactor(self, sch, block, lead: int):
        """Split an inner reduction ``lanes`` wide and rfactor it; returns the rf block or None."""
        kinds = "".join("S" if iv.iter_type == tirx.IterVar.DataPar else "R" for iv in sch.get(block).iter_vars)
        if kinds[lead:].count("S"):
            return None
        loops = sch.get_loops(block)[lead:]
        if not loops:
            return None
        r = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        ext = loop_extent(sch, r)
        if ext is None or ext < 2 * self.lanes or ext % self.lanes:
            return None
        _, ri = sch.split(r, [None, self.lanes])
        try:
            rf = sch.rfactor(ri, factor_axis=0)
        except (RuntimeError, ValueError):  # not every reduction can be factored (e.g. argmax)
            return None
        sch.set_scope(rf, 0, "local")
        return rf

    def _vectorize_rf(self, sch, rf) -> None:
        # After compute_at the rf loops follow its iter vars: [rows, lanes (ki), unit..., ko].
        inner = sch.get_loops(rf)[1:]
        ki, ko = inner[0], inner[-1]
        sch.reorder(ko, ki)
        sch.vectorize(ki)
        init = sch.decompose_reduction(rf, ko)
        sch.vectorize(sch.get_loops(init)[-1])

    def _vectorize_outer_reduction(self, sch, block, lead: int) -> None:
        """Reduction loops first, the contiguous spatial axis innermost and vectorized."""
        tail = "".join(
            "S" if iv.iter_type == tirx.IterVar.DataPar else "R" for iv in sch.get(block).iter_vars
        )[lead:]
        loops = sch.get_loops(block)[1:]
        if "R" not in tail or "S" not in tail or len(loops) < len(tail):
            return
        loops = loops[len(loops) - len(tail):]
        s_loops = [lp for lp, k in zip(loops, tail) if k == "S"]
        r_loops = [lp for lp, k in zip(loops, tail) if k == "R"]
        sch.reorder(*r_loops, *s_loops)
        vec = sch.fuse(*s_loops) if len(s_loops) > 1 else s_loops[0]
        ext = loop_extent(sch, vec)
        vectorized = ext is not None and 2 <= ext <= 4 * self.lanes
        if vectorized:
            if ext > self.lanes and ext % self.lanes == 0:
                _, vec = sch.split(vec, [None, self.lanes])
            sch.vectorize(vec)
        init = sch.decompose_reduction(block, r_loops[0])
        if vectorized:
            sch.vectorize(sch.get_loops(init)[-1])


def _const(dom):
    return int(dom) if isinstance(dom, (int, tirx.IntImm)) else None
