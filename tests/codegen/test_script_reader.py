"""The fast TVMScript reader: the same PrimFunc as TVMScript's parser on every kernel family, a clean refusal
outside its subset, and the parser as the fallback."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen import _tvm  # noqa: E402
from sparseforge.codegen.cuda.rules import CUDA_RULES  # noqa: E402
from sparseforge.codegen.kernels import _common, _script_reader  # noqa: E402
from sparseforge.codegen.kernels import make_target  # noqa: E402
from sparseforge.codegen.kernels import rules as R  # noqa: E402

CPU = make_target({"kind": "llvm"}, threads=2, lanes=8)


@pytest.fixture
def strict(monkeypatch):
    """Every kernel built in the test must be read by the reader and equal the parser's PrimFunc."""
    monkeypatch.setenv(_common.CHECK_READER_ENV, "strict")


@pytest.mark.parametrize("variant,kind,x_shape,n", [
    ("csr", "matmul", (24, 64), 48), ("bsr4x1", "matmul", (24, 64), 48), ("nm2:4", "matmul", (24, 64), 48),
    ("csr", "conv1x1", (1, 20, 9, 13), 40), ("bsr1x4", "conv1x1", (1, 20, 9, 13), 40),
    ("nm2:8", "conv1x1", (2, 16, 7, 7), 24)])
@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_kernels_read_like_the_parser(strict, variant, kind, x_shape, n, threads) -> None:
    op = R.calibration_op(variant, kind, x_shape, n, 0.3, seed=3)
    kernel = R.build(op, make_target({"kind": "llvm"}, threads=threads, lanes=8), R.CPU_RULES)
    assert kernel is not None and isinstance(kernel.func, _tvm.tirx.PrimFunc)


@pytest.mark.parametrize("variant,kind", [("csr", "matmul"), ("bsr4x1", "matmul"), ("csr", "conv1x1")])
def test_cuda_kernels_build_with_either_reader(variant, kind) -> None:
    """CUDA kernels (thread bindings, shared memory) are compared with the parser (the session-wide check)."""
    op = R.calibration_op(variant, kind, (1, 32, 8, 8) if kind == "conv1x1" else (16, 32), 24, 0.3, seed=1)
    kernel = R.build(op, "sm_90", CUDA_RULES)
    assert kernel is not None


def test_fused_and_direct_conv_kernels_read_like_the_parser(strict) -> None:
    from sparseforge.codegen.kernels import expand_depthwise_nchwc
    from sparseforge.codegen.kernels.testing import unstructured

    rng = np.random.default_rng(0)
    w = unstructured(rng, 48, 16, 0.2)
    dw = rng.standard_normal((48, 1, 3, 3)).astype(np.float32)
    for weight, block in ((w, None), (w, (4, 1))):
        kernel = expand_depthwise_nchwc(weight, dw, 1, 20, 20, strides=(2, 2), pads=(1, 1, 1, 1), activation="relu6",
                                        dw_activation="hardswish", block=block, target=CPU)
        assert isinstance(kernel.func, _tvm.tirx.PrimFunc)
    direct = R.calibration_op("csr", "conv2d:1x16x12x12:o24:k3x3:s2x2:p1x1x1x1:d1x1:g1", (1, 16, 12, 12), 24,
                              0.2, seed=2)
    assert R.build(direct, CPU, R.CPU_RULES) is not None


TEXT = '''@T.prim_func
def f(A: T.Buffer((16,), "float32"), B: T.Buffer((16,), "float32")):
    T.func_attr({"global_symbol": "f", "tirx.noalias": True})
    for i in T.serial(16):
        v = T.Bind(A[i] * T.float32(2))
        if i < 8 and i % 2 == 0:
            B[i] = v + T.float32(1)
        else:
            B[i] = T.max(v, T.float32(0))
'''


def test_reader_equals_parser_on_handwritten_text() -> None:
    func = _script_reader.read_prim_func(TEXT, {"T": _tvm.T})
    assert _tvm.structural_equal(func, _tvm.tvm.script.from_source(TEXT, extra_vars={"T": _tvm.T}))


@pytest.mark.parametrize("body", [
    "        x = A[i]\n        B[i] = x",  # a mutable scalar: the parser makes a local buffer
    "        B[i] = A[i] if i < 4 else A[0]",  # conditional expression
    "        B[i] = A[i]\n    else:\n        pass",  # for-else
    "        B[0:4] = A[0:4]",  # slices
])
def test_reader_refuses_what_it_does_not_read_and_parse_falls_back(body, monkeypatch) -> None:
    text = TEXT.split("    for i")[0] + "    for i in T.serial(16):\n" + body + "\n"
    try:
        expected = _tvm.tvm.script.from_source(text, extra_vars={"T": _tvm.T})
    except Exception:  # noqa: BLE001 - some of these are not valid TVMScript either; the reader must refuse them
        expected = None
    with pytest.raises(_script_reader.Unsupported):
        _script_reader.read_prim_func(text, {"T": _tvm.T})
    if expected is not None:
        src = _common.Src()
        src.lines = text.rstrip("\n").split("\n")
        monkeypatch.setenv(_common.CHECK_READER_ENV, "0")
        assert _tvm.structural_equal(_common.parse(src), expected)
