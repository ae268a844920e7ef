"""Sparse direct k x k convolution kernel: every geometry (stride, padding, dilation, groups), NCHW and NCHWc,
CSR and BSR r x 1, against the NumPy reference; refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen.kernels import make_target  # noqa: E402
from sparseforge.codegen.kernels import rules as R  # noqa: E402
from sparseforge.codegen.kernels.conv_direct import Geometry, sparse_conv2d  # noqa: E402
from sparseforge.codegen.kernels.testing import block_sparse, check_kernels, unstructured  # noqa: E402
from sparseforge.ir import forms  # noqa: E402
from sparseforge.ir.conv import ConvSpec  # noqa: E402

pytestmark = pytest.mark.tvm

SPECS = [
    ConvSpec((1, 8, 10, 12), 16, (3, 3), (1, 1), (1, 1, 1, 1)),                 # ResNet 3x3
    ConvSpec((2, 6, 11, 9), 8, (3, 3), (2, 2), (1, 1, 1, 1)),                   # stride 2, odd sizes, batch 2
    ConvSpec((1, 3, 20, 20), 8, (7, 7), (2, 2), (3, 3, 3, 3)),                  # the 7x7 stem
    ConvSpec((1, 8, 9, 9), 8, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), group=2),   # dilated, grouped
    ConvSpec((1, 8, 9, 9), 12, (3, 1), (1, 2), (1, 0, 0, 0), group=4),          # asymmetric everything
    ConvSpec((1, 8, 7, 7), 16, (1, 1), (2, 2)),                                 # strided 1x1 (downsampling)
    ConvSpec((1, 4, 5, 5), 4, (5, 5), (3, 3), (0, 0, 0, 0)),                    # one output position
    ConvSpec((1, 32, 3, 3), 20, (3, 3), (1, 1), (1, 1, 1, 1)),                  # channel-parallel, Cout % 16
]


#: (lanes, block, threads): NCHW and NCHWc (AVX2 and SIMD128/NEON widths), CSR and BSR 2x1, 1 and 2 threads
VARIANTS = [(None, None, 1), (16, None, 2), (4, (2, 1), 2), (None, (2, 1), 1), (8, None, 1)]


def test_direct_conv_matches_reference() -> None:
    """Every geometry of SPECS in every variant, built as one module, against the float64 NumPy convolution."""
    rng = np.random.default_rng(0)
    kernels = []
    for i, spec in enumerate(SPECS):
        for lanes, block, threads in VARIANTS:
            if block is not None and (spec.cout // spec.group) % block[0]:
                continue
            w = unstructured(rng, spec.cout, spec.reduction, 0.3, empty_rows=[0]) if block is None else \
                block_sparse(rng, spec.cout, spec.reduction, *block, 0.4)
            bias = rng.standard_normal(spec.cout).astype(np.float32) if threads == 2 else None
            kernels.append(sparse_conv2d(w, spec, bias=bias, activation="relu" if lanes else "none", lanes=lanes,
                                         block=block, target=make_target(threads=threads),
                                         name=f"direct_{i}_{len(kernels)}"))
    bad = check_kernels(kernels, make_target(threads=2), tol=1e-5)
    assert not bad, bad


def test_k_panels_encoded_operands_and_shapes() -> None:
    rng = np.random.default_rng(1)
    spec = ConvSpec((1, 16, 8, 8), 8, (3, 3), (1, 1), (1, 1, 1, 1))
    w = unstructured(rng, spec.cout, spec.reduction, 0.3)
    kernels = [sparse_conv2d(w, spec, kc=16, target=make_target(threads=2)),
               sparse_conv2d(forms.encode(w, "csr"), spec, lanes=16),
               sparse_conv2d(w.reshape(8, 16, 3, 3), spec, block=(4, 1), kc=32)]
    assert kernels[0].info["plan"].panels > 1 and kernels[2].info["plan"].panels > 1
    assert kernels[1].in_shape == (1, 1, 8, 8, 16) and kernels[1].out_shape == (1, 1, 8, 8, 16)
    assert kernels[0].info["variant"] == "direct" and kernels[2].info["format"] == "bsr4x1"
    assert not check_kernels(kernels, make_target(threads=2), tol=1e-5)


def test_empty_weight_gives_bias() -> None:
    spec = ConvSpec((1, 4, 6, 6), 5, (3, 3), (2, 2), (1, 1, 1, 1))
    bias = np.arange(5, dtype=np.float32)
    kernel = sparse_conv2d(np.zeros((5, spec.reduction), np.float32), spec, bias=bias)
    assert not check_kernels([kernel], make_target(threads=1))


def test_offsets_stay_inside_the_prepared_input() -> None:
    """Every read ``off + q`` (q < OH * Wq) lies inside Xs, for every geometry."""
    for spec in SPECS:
        geo = Geometry(spec)
        assert int(geo.offsets().max()) + geo.width - 1 < geo.planes * geo.plane


def test_refusals() -> None:
    spec = ConvSpec((1, 8, 6, 6), 8, (3, 3), pads=(1, 1, 1, 1), group=2)
    with pytest.raises(ValueError, match="r x 1"):
        sparse_conv2d(np.ones((8, 36), np.float32), spec, block=(1, 4))
    with pytest.raises(ValueError, match="divide the output channels per group"):
        sparse_conv2d(np.ones((8, 36), np.float32), spec, block=(8, 1))
    with pytest.raises(ValueError, match="does not match"):
        sparse_conv2d(np.ones((8, 35), np.float32), spec)
    with pytest.raises(ValueError, match="groups do not divide"):
        ConvSpec((1, 6, 6, 6), 8, (3, 3), group=4)
    with pytest.raises(ValueError, match="does not fit"):
        ConvSpec((1, 4, 2, 2), 4, (3, 3))


def test_rules_pick_the_direct_kernel() -> None:
    """Conv ops go to the direct kernel (NCHWc on CPU targets); BSR with wide blocks runs as CSR over the same
    nonzeros; the calibration op of a geometry key builds it."""
    spec = ConvSpec((1, 8, 6, 6), 8, (3, 3), (2, 2), (1, 1, 1, 1))
    cpu = make_target(threads=1, lanes=16)
    op = R.calibration_op("csr", spec.key(), spec.x_shape, spec.cout, 0.2)
    assert op.kind == "conv" and op.conv == spec and op.m == spec.m
    rule = R.select(R.CPU_RULES, op, cpu)
    assert rule.name == "conv-direct-nchwc" and rule.layout == "NCHWc"
    kernel = rule.build(op, cpu)
    assert kernel.info["layout"] == "NCHW16c" and kernel.info["conv"] == spec.key()
    wide = R.calibration_op("bsr1x4", spec.key(), spec.x_shape, spec.cout, 0.2)
    assert rule.build(wide, cpu).info["format"] == "csr"


class _SparseWins:
    """Every sparse option at 0.1 of dense: every candidate is rewritten."""

    def predict(self, kernel, m, n, k, *, density=1.0, block=None, nm=None, nnz_blocks=None, kind="matmul"):
        return 1.0 if kernel == "dense" else (0.1 if kernel == "csr" else None)


def _conv_net():
    from helpers import init, make_model, randn, vinfo
    from onnx import helper

    rng = np.random.default_rng(3)

    def w(*shape):
        return (rng.standard_normal(shape) * (rng.random(shape) < 0.2)).astype(np.float32)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="stem", strides=[2, 2], pads=[3, 3, 3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="grouped", pads=[1, 1, 1, 1], group=2,
                              dilations=[2, 2], kernel_shape=[3, 3]),
             helper.make_node("Conv", ["c2", "w3"], ["c3"], name="same", auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("Conv", ["c3", "w4"], ["y"], name="down", strides=[2, 2])]
    inits = [init("w1", w(8, 3, 7, 7)), init("b1", randn(8, seed=1)), init("w2", w(8, 4, 3, 3)),
             init("w3", w(16, 8, 3, 3)), init("w4", w(16, 16, 1, 1))]
    return make_model(nodes, [vinfo("x", [1, 3, 20, 18])], [vinfo("y", [1, 16, 2, 2])], inits)


def test_sparse_convs_compile_and_match_onnxruntime(host_target) -> None:
    """Decide + Sparsify rewrite every conv geometry to ``CsrConv``; the importer lowers them to the direct kernel
    (between NCHWc transforms, a Relu fused); the compiled model matches ONNX Runtime on the original."""
    import onnx_ir as ir
    from helpers import to_ir

    from sparseforge.codegen import build as cg
    from sparseforge.codegen import importer, vm
    from sparseforge.ir import keys
    from sparseforge.passes.analysis.analyse import StructureAnalysisPass
    from sparseforge.passes.decide import DecideFormatPass
    from sparseforge.passes.infra import Pipeline
    from sparseforge.passes.rewrites.sparsify import SparsifyPass
    from sparseforge.runtime.compare import session

    proto = _conv_net()
    model = to_ir(proto)
    Pipeline([StructureAnalysisPass(with_rank=False), DecideFormatPass(_SparseWins()), SparsifyPass()])(model)
    assert sorted(n.op_type for n in model.graph if n.domain == keys.DOMAIN) == ["CsrConv"] * 4
    sparse_proto = ir.to_proto(model)
    x = np.random.default_rng(5).standard_normal((1, 3, 20, 18)).astype(np.float32)
    (expected,) = session(proto).run(None, {"x": x})
    (in_ort,) = session(sparse_proto).run(None, {"x": x})
    np.testing.assert_allclose(in_ort, expected, rtol=1e-5, atol=1e-5)
    mod, records = importer.from_onnx(sparse_proto, kernel_target=make_target(threads=2, lanes=16))
    assert [(r.node, r.info["variant"], r.activation) for r in records] == [
        ("stem", "direct", "relu"), ("grouped", "direct", "none"), ("same", "direct", "none"),
        ("down", "direct", "none")]
    (got,) = vm.VMRunner(cg.build(mod, host_target), threads=2)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
