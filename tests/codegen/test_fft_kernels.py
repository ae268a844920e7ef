"""The FFT convolution kernel against the direct NumPy correlation, and FftConv through the whole compile flow.

Errors are checked against :func:`sparseforge.ir.forms.fft_conv.tolerance` (``8 eps log2(N) |x| |w|``), the
bound the FFT's rounding obeys.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen.kernels import build, make_target, run  # noqa: E402
from sparseforge.codegen.kernels.fft_conv import fft_conv1d  # noqa: E402
from sparseforge.ir.forms import fft_conv  # noqa: E402

pytestmark = pytest.mark.tvm

CASES = [  # batch, channels, length, taps, pads
    (1, 6, 256, 96, (95, 0)),  # causal
    (2, 5, 300, 100, (50, 49)),  # odd channel count, centred
    (1, 3, 200, 80, (0, 0)),  # valid, shorter output
    (2, 40, 128, 128, (127, 0)),  # more channels than one vector of pairs, kernel as long as the signal
    (1, 2, 100, 64, (200, 7)),  # padding wider than the kernel
]


@pytest.mark.parametrize("lanes", [4, None], ids=["lanes4", "host"])
def test_kernel_matches_direct_correlation(lanes) -> None:
    tgt = make_target(threads=2, lanes=lanes)
    rng = np.random.default_rng(0)
    kernels, data = [], []
    for i, (b, c, t, taps, pads) in enumerate(CASES):
        w = rng.standard_normal((c, 1, taps)).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32) if i % 2 else None
        x = rng.standard_normal((b, c, t)).astype(np.float32)
        kernels.append(fft_conv1d(w, x.shape, pads=pads, bias=bias, target=tgt))
        data.append((x, w, bias, pads))
    lib = build(kernels, tgt)
    for kernel, (x, w, bias, pads) in zip(kernels, data):
        y = run(kernel, x, tgt, lib)
        ref = fft_conv.reference(x, w, bias, pads)
        assert y.shape == ref.shape
        err = float(np.abs(y - ref).max())
        assert err <= fft_conv.tolerance(x, w, kernel.info["fft_length"]), (kernel.info, err)
        assert err < 1e-4 * float(np.abs(ref).max())  # far inside the bound in practice


def test_compile_flow_uses_the_fft_kernel_and_verifies(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from sparseforge import api

    rng = np.random.default_rng(2)
    w = (rng.standard_normal((8, 1, 256)) / 16).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="hyena/long", group=8,
                                                pads=[255, 0])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1024])],
                              [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(proto)
    result = api.compile(proto, tmp_path / "artifact", target="x86", threads=1, verify=True)
    assert result.manifest["verify"]["ok"], result.manifest["verify"]
    (kernel,) = result.manifest["kernels"]
    assert kernel["op_type"] == "FftConv" and kernel["info"]["fft_length"] == 2048
    assert result.manifest["structured"][0]["form"] == "fft"
    dense = api.compile(proto, None, target="x86", threads=1, dense=True)
    assert dense.manifest["structured"] == [] and dense.manifest["kernels"] == []


@pytest.mark.parametrize("group, out", [(1, 5), (2, 4)], ids=["dense", "grouped"])
def test_grouped_fft_conv_compiles_for_x86_and_cuda(tmp_path, group, out) -> None:
    """More than one input channel per group: FFTs around batched products per frequency on x86 (verified against
    ONNX Runtime); CUDA compiles four-step FFTs (dense products) around the products."""
    import shutil

    from onnx import TensorProto, helper, numpy_helper

    from sparseforge import api

    rng = np.random.default_rng(3)
    w = (rng.standard_normal((out, 6 // group, 300)) / 30).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="long", group=group,
                                                pads=[299, 0])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 700])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, out, 700])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    result = api.compile(proto, tmp_path / "x86", target="x86", threads=1, verify=True)
    assert result.manifest["verify"]["ok"], result.manifest["verify"]
    (kernel,) = [k for k in result.manifest["kernels"] if k["op_type"] == "FftConv"]
    assert kernel["info"]["variant"] == "grouped-spectral" and kernel["info"]["groups"] == group
    if shutil.which("nvcc"):
        cuda = api.compile(proto, tmp_path / "cuda", target="cuda", arch="sm_80")
        (kernel,) = [k for k in cuda.manifest["kernels"] if k["op_type"] == "FftConv"]
        assert kernel["info"]["variant"] == "four-step"


@pytest.mark.parametrize("n", [16, 256])
def test_batched_fft_matches_numpy(n) -> None:
    from sparseforge.codegen.kernels.fft import fft_batched

    tgt = make_target(threads=2)
    rng = np.random.default_rng(n)
    x = rng.standard_normal((11, n, 2)).astype(np.float32)  # 11 signals: not a whole number of vector groups
    kernels = [fft_batched(11, n, inverse=inv, target=tgt) for inv in (False, True)]
    lib = build(kernels, tgt)
    for kernel in kernels:
        y = run(kernel, x, tgt, lib)
        ref = kernel.reference(x)
        scale = np.abs(ref).max()
        assert np.abs(y - ref).max() <= 8 * np.finfo(np.float32).eps * np.log2(n) * np.sqrt(n) * scale


def test_rfft_product_irfft_model_compiles_with_fft_kernels(tmp_path) -> None:
    """Hyena's explicit ``rfft -> multiply -> irfft`` as torch exports it (DFT onesided forward and inverse)."""
    torch = pytest.importorskip("torch")
    from sparseforge import api

    class FFTConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.randn(8, 256) / 16)

        def forward(self, u):
            n = 2 * u.shape[-1]
            k_f = torch.fft.rfft(self.k, n=n) / n
            y = torch.fft.irfft(torch.fft.rfft(u, n=n) * k_f, n=n, norm="forward")[..., : u.shape[-1]]
            return y + u

    result = api.compile(FFTConv().eval(), tmp_path / "artifact", (torch.randn(1, 8, 256),), target="x86",
                         threads=1, verify=True)
    assert result.manifest["verify"]["ok"], result.manifest["verify"]


def _relax_run(body, x_np):
    """Build ``body(bb, x)`` as a one-input Relax function for the host and run it on ``x_np``."""
    from sparseforge.codegen import _tvm
    from sparseforge.codegen.build import build as build_module
    from sparseforge.codegen.vm import VMRunner
    from sparseforge.driver.compile import resolve_target

    relax = _tvm.relax
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(tuple(x_np.shape), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    runner = VMRunner(build_module(bb.get(), resolve_target("x86", 1).description), threads=1)
    result = runner(x_np)
    return [np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])]


@pytest.mark.parametrize("n", [1024, 768, 4096])
def test_four_step_transform_matches_numpy(n) -> None:
    """The decomposition CUDA uses (two DFT-matrix products around twiddles), checked here on the CPU: forward,
    one-sided forward, inverse."""
    from sparseforge.codegen import _tvm
    from sparseforge.codegen.converters import dft

    op = _tvm.relax.op
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, n)).astype(np.float32)
    want = np.fft.fft(x.astype(np.float64), axis=1)
    tol = 16 * np.finfo(np.float32).eps * np.log2(n) * np.sqrt(n) * np.abs(x).max()
    for onesided, bins in ((False, n), (True, n // 2 + 1)):
        re, im = _relax_run(lambda bb, v: op.concat(list(dft.transform(bb, v, None, n, inverse=False,
                                                                        onesided=onesided)), axis=1), x)[0].reshape(
            3, 2, bins).transpose(1, 0, 2)
        assert np.abs(re - want.real[:, :bins]).max() <= tol and np.abs(im - want.imag[:, :bins]).max() <= tol
    back = _relax_run(lambda bb, v: dft.transform(bb, v, None, n, inverse=True, onesided=False)[0], x)[0]
    assert np.abs(back - np.fft.ifft(x.astype(np.float64), axis=1).real).max() <= tol / n * 4


@pytest.mark.parametrize("group, out", [(6, 6), (2, 4), (1, 3)], ids=["depthwise", "grouped", "dense"])
def test_four_step_fft_conv_matches_the_direct_convolution(group, out) -> None:
    """FftConv as CUDA lowers it (four-step FFTs, products per frequency), run on the CPU."""
    from sparseforge.codegen.converters import fft_conv as lowering

    rng = np.random.default_rng(group)
    w = (rng.standard_normal((out, 6 // group, 300)) / 30).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32)
    x = rng.standard_normal((2, 6, 700)).astype(np.float32)
    (got,) = _relax_run(lambda bb, v: lowering.grouped(bb, v, w, b, (299, 0), None), x)
    want = fft_conv.reference(x, w, b, (299, 0))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= fft_conv.tolerance(x, w, 1024)
