"""Sparse TIR kernels specialized to constant weights, plus a dense reference kernel.

Every builder returns a :class:`SparseKernel` whose ``func`` is a scheduled TIR PrimFunc (``tirx.is_scheduled``)
called as ``func(X, *constants, Y)``. See each module's docstring for layouts, dtypes and exactness.
"""

from ._common import ACTIVATIONS, KernelTarget, SparseKernel, make_target, resolve_target
from .bsr import bsr_matmul
from .conv1x1 import sparse_conv1x1
from .csr import csr_matmul
from .dense import dense_matmul
from .measure import Runner, build, measure, run
from .nm import nm_matmul

__all__ = [
    "ACTIVATIONS",
    "KernelTarget",
    "Runner",
    "SparseKernel",
    "bsr_matmul",
    "build",
    "csr_matmul",
    "dense_matmul",
    "make_target",
    "measure",
    "nm_matmul",
    "resolve_target",
    "run",
    "sparse_conv1x1",
]
