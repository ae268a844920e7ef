"""Block-diagonal up to permutation: the nonzeros of ``W[N, K]`` (the ``(output, reduction)`` view) split into
independent blocks.

Rows (outputs) and columns (reductions) are the two sides of a bipartite graph with an edge per nonzero; its
connected components with at least one row and one column are the blocks ``W[R_b][:, C_b]``. Rows without a
nonzero are zero outputs; columns without one are never read. ``x @ W.T`` is then, exactly (only zero products
are left out), ``y[:, R_b] = x[:, C_b] @ W[R_b, C_b].T`` for every block: a grouped linear layer. Found by
:func:`find_blocks` in ``O(nnz)`` (``scipy.sparse.csgraph.connected_components``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

#: Blocks worth separate products: at most this many (each is one MatMul).
MAX_BLOCKS = 64
#: The blocks together must hold at most this fraction of the dense weight's elements.
MAX_STORED_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class Blocks:
    """``rows[b]`` and ``cols[b]`` (sorted index arrays) of each block, in order of their first row;
    ``zero_rows`` the outputs no block writes."""

    rows: tuple[np.ndarray, ...]
    cols: tuple[np.ndarray, ...]
    zero_rows: np.ndarray

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def stored(self) -> int:
        return int(sum(r.size * c.size for r, c in zip(self.rows, self.cols)))

    def weights(self, matrix: np.ndarray) -> list[np.ndarray]:
        """Each block's ``W[R_b][:, C_b]`` (``[|R_b|, |C_b|]``)."""
        return [np.ascontiguousarray(matrix[np.ix_(r, c)]) for r, c in zip(self.rows, self.cols)]


def find_blocks(matrix: np.ndarray) -> tuple[Blocks | None, str]:
    """The blocks of ``matrix`` when it has 2 to :data:`MAX_BLOCKS` of them holding at most
    :data:`MAX_STORED_FRACTION` of it; else None. A reason either way."""
    n, k = matrix.shape
    rows, cols = np.nonzero(matrix)
    if rows.size == 0:
        return None, "all-zero weight"
    adjacency = scipy.sparse.coo_matrix((np.ones(rows.size, np.int8), (rows, n + cols)), shape=(n + k, n + k))
    count, labels = scipy.sparse.csgraph.connected_components(adjacency, directed=False)
    row_labels, col_labels = labels[:n], labels[n:]
    live = np.unique(row_labels[np.any(matrix != 0, axis=1)])
    if live.size < 2:
        return None, "one block: the nonzeros connect every used row and column"
    if live.size > MAX_BLOCKS:
        return None, f"{live.size} blocks (at most {MAX_BLOCKS} are worth separate products)"
    order = sorted(live, key=lambda label: int(np.flatnonzero(row_labels == label)[0]))
    blocks = Blocks(tuple(np.flatnonzero(row_labels == label) for label in order),
                    tuple(np.flatnonzero(col_labels == label) for label in order),
                    np.flatnonzero(~np.isin(row_labels, live)))
    if blocks.stored > MAX_STORED_FRACTION * n * k:
        return None, (f"{blocks.count} blocks holding {blocks.stored / (n * k):.2f} of the weight (above "
                      f"{MAX_STORED_FRACTION})")
    sizes = ", ".join(f"{r.size}x{c.size}" for r, c in zip(blocks.rows[:8], blocks.cols[:8]))
    more = ", ..." if blocks.count > 8 else ""
    return blocks, f"{blocks.count} blocks ({sizes}{more}) holding {blocks.stored / (n * k):.2f} of {n}x{k}"
