"""Sparse TIR kernels specialized to constant weights (see each module's docstring for layouts)."""

from ._common import KernelTarget, SparseKernel, make_target, resolve_target
from .bsr import bsr_matmul
from .csr import csr_matmul
from .measure import build, measure, run

__all__ = ["KernelTarget", "SparseKernel", "bsr_matmul", "build", "csr_matmul", "make_target", "measure",
           "resolve_target", "run"]
