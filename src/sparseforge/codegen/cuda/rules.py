"""CUDA kernel rules (see :mod:`sparseforge.codegen.kernels.rules`): 1x1 conv NCHW, CSR / BSR / N:M matmul, dense
fallback. ``target`` is the SM arch (what :func:`.build.arch_of` accepts)."""

from __future__ import annotations

from ..kernels.rules import make_rules
from .kernels import bsr_matmul, csr_matmul, nm_matmul, sparse_conv1x1

CUDA_RULES = make_rules(csr_matmul=csr_matmul, bsr_matmul=bsr_matmul, nm_matmul=nm_matmul,
                        sparse_conv1x1=sparse_conv1x1)
