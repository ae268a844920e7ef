"""Kernel rules: first match wins, dense fallback last; builders take encoded operands; the importer walks the
rules (numerics checked end to end against ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

import onnx_ir as ir  # noqa: E402
from helpers import init, make_model, randn, to_ir, vinfo  # noqa: E402
from onnx import helper  # noqa: E402

from sparseforge.codegen import importer  # noqa: E402
from sparseforge.codegen import kernels as K  # noqa: E402
from sparseforge.codegen.cuda.rules import CUDA_RULES  # noqa: E402
from sparseforge.codegen.kernels import rules as R  # noqa: E402
from sparseforge.ir import forms  # noqa: E402
from sparseforge.passes.analysis.analyse import StructureAnalysisPass  # noqa: E402
from sparseforge.passes.decide import DecideFormatPass  # noqa: E402
from sparseforge.passes.infra import Pipeline  # noqa: E402
from sparseforge.passes.rewrites.sparsify import SparsifyPass  # noqa: E402
from sparseforge.runtime.compare import session  # noqa: E402

CPU = K.make_target({"kind": "llvm"}, threads=2, lanes=8)


def _op(form, kind, shape=(8, 16), x_shape=None):
    w = np.zeros(shape, np.float32)
    w[::2, ::4] = 1.0
    option = forms.get(form).options(w)[0]
    x_shape = x_shape or ((4, shape[1]) if kind == "matmul" else (1, shape[1], 3, 3))
    return R.SparseOp(form, kind, forms.encode_option(w, option), x_shape)


@pytest.mark.parametrize("form,kind,cpu,cuda", [
    ("csr", "conv1x1", "conv1x1-nchwc", "conv1x1-nchw"), ("bsr", "conv1x1", "conv1x1-nchwc", "conv1x1-nchw"),
    ("nm", "conv1x1", "conv1x1-nchwc", "conv1x1-nchw"), ("csr", "matmul", "csr-matmul", "csr-matmul"),
    ("bsr", "matmul", "bsr-matmul", "bsr-matmul"), ("nm", "matmul", "nm-matmul", "nm-matmul")])
def test_first_matching_rule(form, kind, cpu, cuda) -> None:
    op = _op(form, kind)
    assert R.select(R.CPU_RULES, op, CPU).name == cpu
    assert R.select(CUDA_RULES, op, "sm_90").name == cuda
    assert R.select(R.CPU_RULES, op, {"tvm_target": {"kind": "llvm"}}).name == cuda  # no lanes: plain NCHW


def test_dense_fallback_is_last_and_builds_nothing() -> None:
    for rules in (R.CPU_RULES, CUDA_RULES):
        assert rules[-1] is R.DENSE_FALLBACK
    op = R.SparseOp("future", "matmul", _op("csr", "matmul").operand, (4, 16))
    assert R.select(R.CPU_RULES, op, CPU) is R.DENSE_FALLBACK and R.build(op, CPU) is None
    with pytest.raises(LookupError):
        R.select(R.CPU_RULES[:-1], op, CPU)


def _same(a, b) -> None:
    assert a.func.script() == b.func.script()
    assert len(a.constants) == len(b.constants)
    for x, y in zip(a.constants, b.constants):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("m", [1, 8])
def test_builders_take_encoded_operands(m) -> None:
    w = forms.random_weight(24, 40, 0.3, "bsr8x1", seed=2)
    b = randn(24, seed=3)
    _same(K.csr_matmul(forms.encode(w, "csr"), m, bias=b, target=CPU, name="k"),
          K.csr_matmul(w, m, bias=b, target=CPU, name="k"))
    _same(K.bsr_matmul(forms.encode(w, "bsr", block=(8, 1)), m, target=CPU, name="k"),
          K.bsr_matmul(w, m, block=(8, 1), target=CPU, name="k"))
    wn = forms.random_weight(24, 40, 0.0, "nm2:4", seed=2)
    _same(K.nm_matmul(forms.encode(wn, "nm", nm=(2, 4)), m, activation="relu", target=CPU, name="k"),
          K.nm_matmul(wn, m, n=2, group=4, activation="relu", target=CPU, name="k"))
    # N:M has no conv kernel: the CSR conv kernel reads the same nonzeros
    _same(K.sparse_conv1x1_nchwc(forms.encode(wn, "nm", nm=(2, 4)), 1, 3, 3, target=CPU, name="k"),
          K.sparse_conv1x1_nchwc(wn, 1, 3, 3, target=CPU, name="k"))


def test_calibration_op_builds_the_variant() -> None:
    op = R.calibration_op("bsr4x1", "matmul", (4, 32), 16, 0.25)
    assert op.operand.block == (4, 1) and op.bias is None and op.activation == "none"
    kernel = R.build(op, CPU)
    assert kernel.info["format"] == "bsr" and kernel.in_shape == (4, 32)
    conv = R.build(R.calibration_op("nm2:4", "conv1x1", (1, 32, 2, 2), 16, 0.5), CPU)
    assert conv.info["variant"] == "nchwc" and conv.info["format"] == "csr"


class _Cost:
    def __init__(self, form):
        self.form = form

    def predict(self, kernel, m, n, k, *, density=1.0, block=None, nm=None, nnz_blocks=None, kind="matmul"):
        return 1.0 if kernel == "dense" else (0.1 if kernel == self.form else None)


def _model():
    rng = np.random.default_rng(0)
    w_mm = (rng.standard_normal((16, 12)) * (rng.random((16, 12)) < 0.2)).astype(np.float32)
    w_c = (rng.standard_normal((8, 12, 1, 1)) * (rng.random((8, 12, 1, 1)) < 0.2)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w_mm"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b_mm"], ["h"], name="mm_bias"),
             helper.make_node("Relu", ["h"], ["y"], name="relu"),
             helper.make_node("Conv", ["img", "w_c", "b_c"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["z"], name="sig")]
    inits = [init("w_mm", w_mm), init("b_mm", randn(12, seed=1)), init("w_c", w_c), init("b_c", randn(8, seed=2))]
    return make_model(nodes, [vinfo("x", [3, 16]), vinfo("img", [1, 12, 4, 4])],
                      [vinfo("y", [3, 12]), vinfo("z", [1, 8, 4, 4])], inits)


def _sparse_proto(form):
    model = to_ir(_model())
    Pipeline([StructureAnalysisPass(with_rank=False), DecideFormatPass(_Cost(form)), SparsifyPass()])(model)
    return ir.to_proto(model)


def test_rules_and_legacy_builders_import_the_same() -> None:
    proto = _sparse_proto("bsr")
    _, with_rules = importer.from_onnx(proto, kernel_target=CPU, rules=R.CPU_RULES)
    _, with_builders = importer.from_onnx(proto, kernel_target=CPU, builders=K)
    assert [(r.node, r.fmt, r.activation, r.info["format"]) for r in with_rules] == \
        [(r.node, r.fmt, r.activation, r.info["format"]) for r in with_builders] == \
        [("mm", "bsr", "relu", "bsr"), ("conv", "bsr", "sigmoid", "bsr4x1")]


@pytest.mark.slow
@pytest.mark.parametrize("form,rules", [("csr", R.CPU_RULES), ("csr", (R.DENSE_FALLBACK,))])
def test_imported_model_matches_onnxruntime(host_target, form, rules) -> None:
    from sparseforge.codegen import build as cg
    from sparseforge.codegen import vm

    proto = _sparse_proto(form)
    mod, records = importer.from_onnx(proto, kernel_target=CPU, rules=rules)
    kernels = {r.kernel for r in records}
    assert kernels == {"dense"} if rules == (R.DENSE_FALLBACK,) else "dense" not in kernels
    x = randn(3, 16, seed=5)
    img = randn(1, 12, 4, 4, seed=6)
    expected = session(_model()).run(None, {"x": x, "img": img})
    runner = vm.VMRunner(cg.build(mod, host_target), threads=2)
    for got, want in zip(runner(x, img), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
