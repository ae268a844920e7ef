"""Kernel rules: which kernel lowers one ``ai.sparseforge`` node on a target. Ordered; the first match wins.

A rule has ``matches(op, target) -> bool`` and ``build(op, target) -> SparseKernel | None`` where ``op`` is a
:class:`SparseOp` (form, kind, encoded operand, input shape, bias, fused activation, kernel name) and ``target``
what the builders take (a :class:`KernelTarget` on CPUs, an SM arch on CUDA). Every list ends with
:data:`DENSE_FALLBACK`, whose ``build`` returns None: the importer then lowers the node densely (decoded weight,
TVM's own dense lowering).

:data:`CPU_RULES` (x86, ARM, WebAssembly share them): 1x1 conv in the CPU pipeline's NCHW{L}c layout, 1x1 conv
NCHW, CSR / BSR / N:M matmul, dense fallback. The CUDA list is :data:`sparseforge.codegen.cuda.rules.CUDA_RULES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.conv import ConvSpec, is_conv_key
from sparseforge.ir.forms import Encoded

from ._common import SparseKernel
from .bsr import bsr_matmul
from .conv1x1 import sparse_conv1x1
from .conv1x1_nchwc import sparse_conv1x1_nchwc
from .conv_direct import sparse_conv2d
from .csr import csr_matmul
from .nm import nm_matmul


@dataclasses.dataclass(frozen=True)
class SparseOp:
    """One ``ai.sparseforge`` node as the rules see it.

    form: "csr" / "bsr" / "nm"; kind: "matmul", "conv1x1" or "conv" (any 2-D convolution, geometry in
    ``conv``); operand: the encoded weight ``[N, K]``; x_shape: the activation input, ``(M, K)`` for matmul
    (leading dims flattened), ``(B, C, H, W)`` for convolutions; bias: float32 ``[N]`` or None; activation: a name
    of :data:`~.activations.ACTIVATIONS`; name: kernel name (None: a unique one).
    """

    form: str
    kind: str
    operand: Encoded
    x_shape: tuple[int, ...]
    bias: np.ndarray | None = None
    activation: str = "none"
    name: str | None = None
    conv: ConvSpec | None = None

    @property
    def m(self) -> int:
        """Rows of the dense operand (matmul M; conv batch x output positions)."""
        if self.conv is not None:
            return self.conv.m
        return int(np.prod(self.x_shape[:1] + self.x_shape[2:])) if self.kind == "conv1x1" else int(self.x_shape[0])

    def common(self, target) -> dict:
        """The builder keywords every kernel takes."""
        return dict(bias=self.bias, activation=self.activation, target=target, name=self.name)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Applies ``builder`` to ops of ``kind`` (and ``forms``, None: any form) on targets ``target_ok`` accepts.

    ``layout``: None (the kernel takes the node's own input layout) or "NCHWc" (blocked ``NCHW{lanes}c`` input and
    output, ``lanes`` from the target: the importer adds the layout transforms)."""

    name: str
    kind: str
    builder: Callable[[SparseOp, object], SparseKernel | None]
    forms: frozenset[str] | None = None
    target_ok: Callable[[object], bool] = lambda target: True
    layout: str | None = None

    def matches(self, op: SparseOp, target) -> bool:
        return (op.kind == self.kind and (self.forms is None or op.form in self.forms)
                and self.target_ok(target))

    def build(self, op: SparseOp, target) -> SparseKernel | None:
        return self.builder(op, target)


@dataclasses.dataclass(frozen=True)
class DenseFallback:
    """Matches everything; ``build`` returns None: leave the node to TVM's dense lowering."""

    name: str = "dense"

    def matches(self, op: SparseOp, target) -> bool:
        return True

    def build(self, op: SparseOp, target) -> None:
        return None


DENSE_FALLBACK = DenseFallback()


def conv_block(op: SparseOp) -> tuple[int, int] | None:
    """Block shape a conv kernel uses for ``op``: BSR keeps its blocks; CSR and N:M (no dedicated conv kernel:
    the CSR conv kernel reads the same nonzeros) use None."""
    return op.operand.block if op.form == "bsr" else None


def target_lanes(target) -> int | None:
    """Float32 vector lanes of a CPU kernel target (None for targets without, e.g. a CUDA arch)."""
    return getattr(target, "lanes", None)


def direct_block(op: SparseOp) -> tuple[int, int] | None:
    """Block shape the direct conv kernel uses: BSR ``r x 1`` keeps its blocks; other forms (and wider blocks) run
    as CSR over the same nonzeros."""
    block = op.operand.block if op.form == "bsr" else None
    return block if block is not None and block[1] == 1 else None


def make_rules(*, csr_matmul, bsr_matmul, nm_matmul, sparse_conv1x1, sparse_conv1x1_nchwc=None,
               sparse_conv2d=None) -> tuple:
    """The standard rule list over one set of builders (CPU or CUDA signatures)."""
    rules = []
    if sparse_conv2d is not None:
        rules.append(Rule("conv-direct-nchwc", "conv", lambda op, t: sparse_conv2d(
            op.operand, op.conv, lanes=target_lanes(t), block=direct_block(op), **op.common(t)),
            target_ok=lambda t: bool(target_lanes(t)), layout="NCHWc"))
        rules.append(Rule("conv-direct-nchw", "conv", lambda op, t: sparse_conv2d(
            op.operand, op.conv, block=direct_block(op), **op.common(t))))
    if sparse_conv1x1_nchwc is not None:
        rules.append(Rule("conv1x1-nchwc", "conv1x1", lambda op, t: sparse_conv1x1_nchwc(
            op.operand, *op.x_shape[:1], *op.x_shape[2:], lanes=target_lanes(t), block=conv_block(op),
            **op.common(t)), target_ok=lambda t: bool(target_lanes(t)), layout="NCHWc"))
    rules += [
        Rule("conv1x1-nchw", "conv1x1", lambda op, t: sparse_conv1x1(
            op.operand, *op.x_shape[:1], *op.x_shape[2:], block=conv_block(op), **op.common(t))),
        Rule("csr-matmul", "matmul", lambda op, t: csr_matmul(op.operand, op.m, **op.common(t)),
             frozenset({"csr"})),
        Rule("bsr-matmul", "matmul", lambda op, t: bsr_matmul(op.operand, op.m, block=op.operand.block,
                                                              **op.common(t)), frozenset({"bsr"})),
        Rule("nm-matmul", "matmul", lambda op, t: nm_matmul(op.operand, op.m, n=op.operand.nm[0],
                                                            group=op.operand.nm[1], **op.common(t)),
             frozenset({"nm"})),
        DENSE_FALLBACK,
    ]
    return tuple(rules)


def rules_from_builders(module) -> tuple:
    """Rules over a builders module (``csr_matmul``, ``bsr_matmul``, ``nm_matmul``, ``sparse_conv1x1`` and
    optionally ``sparse_conv1x1_nchwc``), as the importer's old ``builders=`` argument used them."""
    return make_rules(csr_matmul=module.csr_matmul, bsr_matmul=module.bsr_matmul, nm_matmul=module.nm_matmul,
                      sparse_conv1x1=module.sparse_conv1x1,
                      sparse_conv1x1_nchwc=getattr(module, "sparse_conv1x1_nchwc", None))


CPU_RULES = make_rules(csr_matmul=csr_matmul, bsr_matmul=bsr_matmul, nm_matmul=nm_matmul,
                       sparse_conv1x1=sparse_conv1x1, sparse_conv1x1_nchwc=sparse_conv1x1_nchwc,
                       sparse_conv2d=sparse_conv2d)


def select(rules: Sequence, op: SparseOp, target):
    """The first rule matching ``op`` on ``target`` (LookupError if none: a list should end with the fallback)."""
    for rule in rules:
        if rule.matches(op, target):
            return rule
    raise LookupError(f"no kernel rule for {op.form} {op.kind}")


def build(op: SparseOp, target, rules: Sequence = CPU_RULES) -> SparseKernel | None:
    """The kernel of the first matching rule (None: dense fallback)."""
    return select(rules, op, target).build(op, target)


def calibration_op(variant: str, kind: str, x_shape: tuple[int, ...], n: int, density: float, *,
                   seed: int = 1) -> SparseOp:
    """A :class:`SparseOp` on a random weight ``[n, K]`` of calibration variant ``variant`` ("csr", "bsr4x1",
    "nm2:4") at ``density`` (K = ``x_shape[1]`` for 1x1 conv, ``x_shape[-1]`` for matmul); no bias, no activation.
    ``kind`` may be a conv geometry key (:meth:`ConvSpec.key`): a ``"conv"`` op of that geometry."""
    option = forms.option_for(variant)
    spec = ConvSpec.parse(kind) if is_conv_key(kind) else None
    k = spec.reduction if spec is not None else int(x_shape[1] if kind == "conv1x1" else x_shape[-1])
    weight = forms.random_weight(n, k, density, option, seed=seed)
    return SparseOp(option.form, "conv" if spec is not None else kind, forms.encode_option(weight, option),
                    tuple(int(d) for d in x_shape), conv=spec)
