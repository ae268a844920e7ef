"""In-register transposes of ``lanes x lanes`` float32 blocks (two-source shuffles, ``log2(lanes)`` stages), shared
by the kernels that change layout on the fly (NCHWc tiles, the panel matmul's X -> X^T and Y^T -> Y)."""

from __future__ import annotations

from ._common import Src


def butterfly(lanes: int) -> list[list[tuple[int, int, int, list[int]]]]:
    """Stages of an in-register ``lanes x lanes`` transpose: ``(dst, i, j, idx)`` means
    ``new[dst] = shuffle(concat(v[i], v[j]), idx)``; stage k swaps bit k of the row index with bit k of the lane."""
    stages, b = [], 1
    while b < lanes:
        st = []
        for i in range(lanes):
            if i & b:
                continue
            j = i | b
            st.append((i, i, j, [ln if not ln & b else lanes + ln - b for ln in range(lanes)]))
            st.append((j, i, j, [ln + b if not ln & b else lanes + ln for ln in range(lanes)]))
        stages.append(st)
        b *= 2
    return stages


def emit_transpose(src: Src, lanes: int, load, store) -> None:
    """Transpose L vectors in registers: ``load(j)`` is the j-th input vector (None: zeros), ``store(l, expr)``
    consumes output vector l (lane j of output l = lane l of input j)."""
    zero = f"T.Broadcast(T.float32(0), {lanes})"
    cur = []
    for j in range(lanes):
        e = load(j)
        if e is None:
            cur.append(zero)
        else:
            cur.append(src.let(src.var("tv"), e))
    for st in butterfly(lanes):
        new = [None] * lanes
        for d, i, j, idx in st:
            if cur[i] == zero and cur[j] == zero:
                new[d] = zero
            else:
                new[d] = src.let(src.var("tv"), f"T.Shuffle([{cur[i]}, {cur[j]}], {idx})")
        cur = new
    for ln in range(lanes):
        store(ln, cur[ln])
