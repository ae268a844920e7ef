"""Sparse TIR kernels specialized to constant weights, plus a dense reference kernel.

Builders (each returns a :class:`SparseKernel` for one constant weight and batch size; ``weight`` is the form's
encoded operand, :class:`sparseforge.ir.forms.Encoded`, packed through :mod:`sparseforge.ir.forms`, or a dense
matrix that is encoded first)::

    bsr_matmul(weight, m, *, block=(4, 1), bias=None, activation="none", target=None, name=None)
    csr_matmul(weight, m, *, bias=None, activation="none", target=None, name=None)
    nm_matmul(weight, m, *, n=2, group=4, bias=None, activation="none", target=None, name=None)
    sparse_conv1x1(weight, batch, height, width, *, bias=None, activation="none", target=None, name=None)
    sparse_conv1x1_nchwc(weight, batch, height, width, *, lanes=None, bias=None, activation="none", target=None,
                         name=None, block=None)
    dense_matmul(weight, m, *, bias=None, activation="none", target=None, name=None)
    expand_depthwise_nchwc(weight, dw_weight, batch, height, width, *, strides=(1, 1), pads=(0, 0, 0, 0),
                           bias=None, activation="none", dw_bias=None, dw_activation="none", lanes=None,
                           block=None, target=None, name=None)

Contract: ``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias[N])`` (conv: NCHW, ``W[Cout, Cin]``; ``_nchwc``: the dense
pipeline's blocked ``NCHW{L}c`` activations, see :mod:`.conv1x1_nchwc`), float32, exact up to
the summation order (``expand_depthwise_nchwc``: a 1x1 expansion and the depthwise conv after it, fused, see
:mod:`.expand_depthwise`); ``act`` in :data:`ACTIVATIONS` (gelu is the erf form). ``kernel.func`` is a scheduled TIR
PrimFunc (``tirx.is_scheduled``) called as ``func(X, *kernel.constants, Y)`` (destination passing, as
``relax.call_tir``). ``target``: None (host), a :class:`KernelTarget`, a dict or an object with ``lanes``,
``threads`` and ``tvm_target`` (JSON-dict TVM target). :func:`measure` compiles for the host and returns the
median seconds per call. Keyword arguments beyond the contract (variant, tile sizes, thresholds) are tuning
knobs; see each module's docstring for layouts and heuristics. Which builder lowers an ``ai.sparseforge`` node:
:data:`CPU_RULES` (:mod:`.rules`, first match wins, dense fallback last). Activations: :mod:`.activations`.
"""

from ._common import ACTIVATIONS, KernelTarget, SparseKernel, make_target, resolve_target
from .bsr import bsr_matmul
from .conv1x1 import sparse_conv1x1
from .conv1x1_nchwc import sparse_conv1x1_nchwc
from .csr import csr_matmul
from .dense import dense_matmul
from .expand_depthwise import expand_depthwise_nchwc
from .measure import Runner, build, measure, run
from .mlp import sparse_mlp
from .nm import nm_matmul
from .rules import CPU_RULES, SparseOp

__all__ = [
    "ACTIVATIONS",
    "CPU_RULES",
    "KernelTarget",
    "Runner",
    "SparseKernel",
    "SparseOp",
    "bsr_matmul",
    "build",
    "csr_matmul",
    "dense_matmul",
    "expand_depthwise_nchwc",
    "make_target",
    "measure",
    "nm_matmul",
    "resolve_target",
    "run",
    "sparse_conv1x1",
    "sparse_conv1x1_nchwc",
    "sparse_mlp",
]
