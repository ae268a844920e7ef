"""Small scheduling helpers shared by the rules (block queries, inlining, vectorized loops)."""

from __future__ import annotations

from .. import _tvm

s_tir = _tvm.s_tir
tirx = _tvm.tirx

IterVar = tirx.IterVar


def root_blocks(sch) -> list:
    """Top-level blocks under the root block, in program order."""
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def is_spatial(sch, block_rv) -> bool:
    """True when every iteration variable of the block is data-parallel."""
    return all(iv.iter_type == IterVar.DataPar for iv in sch.get(block_rv).iter_vars)


def reduction_vars(sch, block_rv) -> list:
    return [iv for iv in sch.get(block_rv).iter_vars if iv.iter_type == IterVar.CommReduce]


def loop_extent(sch, loop_rv) -> int | None:
    ext = sch.get(loop_rv).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def inline_all_but(sch, keep: list) -> bool:
    """Inline every top-level block not in ``keep`` (forward first, then backward).

    Returns False if some block cannot be inlined (the caller should give up on the function).
    """
    keep_srefs = [sch.get_sref(b) for b in keep]
    pending = [b for b in root_blocks(sch) if not any(sch.get_sref(b).same_as(k) for k in keep_srefs)]
    progress = True
    while pending and progress:
        progress = False
        for block in list(pending):
            for prim in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    prim(block)
                except Exception:  # noqa: BLE001 - TVM raises ScheduleError subclasses
                    continue
                pending.remove(block)
                progress = True
                break
    return not pending


def vectorize_inner(sch, loop_rv, lanes: int, unroll_outer: bool = False) -> None:
    """Split ``loop_rv`` into ``[outer, lanes]`` and vectorize the inner part (whole loop if shorter)."""
    ext = loop_extent(sch, loop_rv)
    if ext is not None and ext <= lanes:
        if ext > 1:
            sch.vectorize(loop_rv)
        return
    outer, inner = sch.split(loop_rv, [None, lanes])
    sch.vectorize(inner)
    if unroll_outer:
        sch.unroll(outer)


def unroll_pragma(sch, loop_rv, max_step: int = 64) -> None:
    """Ask TVM to unroll the body of ``loop_rv`` (explicitly, up to ``max_step`` iterations)."""
    sch.annotate(loop_rv, "pragma_auto_unroll_max_step", max_step)
    sch.annotate(loop_rv, "pragma_unroll_explicit", 1)


def flatten_block_axes(sch, block, start: int, stop: int):
    """Re-index a spatial ``block`` so its iteration axes ``[start, stop)`` become one row-major axis.

    Unlike fusing loops, this rewrites the block's own iteration domain, so an access such as
    ``acc[y * W + x]`` becomes ``acc[p]`` and ``compute_at`` regions stay exact. Returns the loops.
    """
    if stop - start <= 1:
        return sch.get_loops(block)
    extents = [int(iv.dom.extent) for iv in sch.get(block).iter_vars]

    def fn(*idx):
        flat = idx[start]
        for v, e in zip(idx[start + 1:stop], extents[start + 1:stop]):
            flat = flat * e + v
        return (*idx[:start], flat, *idx[stop:])

    sch.transform_block_layout(block, tirx.IndexMap.from_func(fn, ndim=len(extents), index_dtype="int64"))
    return sch.get_loops(block)
