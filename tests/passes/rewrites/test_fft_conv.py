"""Long 1-D convolutions (depthwise, grouped, dense) become FftConv (ONNX DFT body): causal, padded and valid; refusals say why."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from helpers import init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir import ops
from sparseforge.ir.forms import fft_conv
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import export
from sparseforge.runtime.compare import FFT_RTOL, compare


def long_conv(channels=6, length=1000, taps=256, pads=(255, 0), *, bias=True, group=None, opset=18, strides=1,
              batch=2, seed=0, out_channels=None):
    rng = np.random.default_rng(seed)
    group = channels if group is None else group
    out = channels if out_channels is None else out_channels
    w = (rng.standard_normal((out, channels // group, taps)) / np.sqrt(taps)).astype(np.float32)
    inits = [init("w", w)]
    inputs = ["x", "w"]
    if bias:
        inits.append(init("b", rng.standard_normal(out).astype(np.float32)))
        inputs.append("b")
    out_len = (length + sum(pads) - taps) // strides + 1
    node = helper.make_node("Conv", inputs, ["y"], name="long", group=group, pads=list(pads), strides=[strides])
    return make_model([node], [vinfo("x", [batch, channels, length])], [vinfo("y", [batch, out, out_len])],
                      inits, opset=opset)


def _run(proto):
    model = to_ir(proto)
    return model, Pipeline(export())(model).report("FftConv")


@pytest.mark.parametrize("pads", [(255, 0), (128, 127), (0, 0), (300, 10)], ids=["causal", "same", "valid", "wide"])
@pytest.mark.parametrize("bias", [True, False])
def test_long_conv_becomes_fft_and_matches_onnxruntime(pads, bias) -> None:
    proto = long_conv(pads=pads, bias=bias)
    model, report = _run(proto)
    assert [(n.domain, n.op_type, n.name) for n in model.graph] == [("ai.sparseforge", "FftConv", "long")]
    assert any(d.code == "fft" for d in report.diagnostics)
    result = compare(proto, model, rtol=1e-4, runs=2)
    assert result.ok, result.to_dict()


@pytest.mark.parametrize("group, out_channels", [(1, 5), (2, 4), (3, 9)], ids=["dense", "grouped", "grouped-wide"])
def test_grouped_and_dense_long_convs_become_fft_conv(group, out_channels) -> None:
    proto = long_conv(channels=6, group=group, out_channels=out_channels, length=700, taps=300, pads=(299, 0))
    model, report = _run(proto)
    assert [n.op_type for n in model.graph] == ["FftConv"], [d.message for d in report.diagnostics]
    x = np.random.default_rng(5).standard_normal((2, 6, 700)).astype(np.float32)
    w = model.graph.initializers["w"].const_value.numpy() if "w" in model.graph.initializers else \
        next(v.const_value.numpy() for v in model.graph.initializers.values() if v.const_value.numpy().ndim == 3)
    b = next(v.const_value.numpy() for v in model.graph.initializers.values() if v.const_value.numpy().ndim == 1
             and v.const_value.dtype == ir.DataType.FLOAT)
    expected = fft_conv.reference(x, w, b, (299, 0))
    import onnxruntime as ort
    got = ort.InferenceSession(ir.to_proto(model).SerializeToString()).run(None, {"x": x})[0]
    assert np.abs(got - expected).max() <= fft_conv.tolerance(x, w, 1024)
    result = compare(proto, model, rtol=1e-4, runs=2)
    assert result.ok, result.to_dict()


def test_a_short_dense_conv_stays_direct() -> None:
    """A kernel of 64 taps over 4096 samples: the transforms cost more than the direct sums."""
    proto = long_conv(channels=2, group=1, length=4096, taps=64, pads=(63, 0))
    model, report = _run(proto)
    assert [n.op_type for n in model.graph] == ["Conv"]
    assert any("not dearer than the FFT" in d.message for d in report.diagnostics)


def test_reference_matches_the_function_body() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 150)).astype(np.float32)
    w = rng.standard_normal((3, 1, 70)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    plan = fft_conv.plan(150, 70, (69, 0))
    direct = ops.reference("FftConv", x, w, b, plan)
    spectral = np.fft.irfft(np.fft.rfft(np.pad(x[0], ((0, 0), (69, 256 - 150 - 69))), 256)
                            * np.fft.rfft(np.pad(w[:, 0, ::-1], ((0, 0), (0, 256 - 70))), 256), 256)[:, 69:69 + 150]
    assert np.allclose(direct[0], spectral + b[:, None], atol=fft_conv.tolerance(x, w, 256))


@pytest.mark.parametrize("case, reason", [
    (dict(strides=2), "strided"),
    (dict(opset=16), "opset 16"),
    (dict(length=4096, taps=64, pads=(63, 0)), "not dearer than the FFT"),
])
def test_refusals_say_why(case, reason) -> None:
    proto = long_conv(**case)
    model, report = _run(proto)
    assert [n.op_type for n in model.graph] == ["Conv"]
    notes = [d.message for d in report.diagnostics if d.code == "fft.not-rewritten"]
    assert notes and reason in notes[0], notes


def test_a_zero_pad_in_front_is_folded_in() -> None:
    """``F.pad(x, (L - 1, 0))`` then a valid conv (how causal long convolutions are written) becomes one FftConv."""
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((4, 1, 256)) / 16).astype(np.float32)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"], name="pad"),
             helper.make_node("Conv", ["xp", "w"], ["y"], name="long", group=4)]
    proto = make_model(nodes, [vinfo("x", [1, 4, 600])], [vinfo("y", [1, 4, 600])],
                       [init("w", w), init("pads", np.array([0, 0, 255, 0, 0, 0], np.int64))])
    model, report = _run(proto)
    assert [n.op_type for n in model.graph] == ["FftConv"]
    plan = model.graph.initializers["long.fft_plan"].const_value.numpy()
    assert fft_conv.pads_of(plan, 600, 256) == (255, 0)
    result = compare(proto, model, rtol=1e-4, runs=2)
    assert result.ok, result.to_dict()


class _SpectralConv:
    """Hyena's ``fftconv`` written with ``torch.fft`` (two DFTs around a complex product once exported)."""

    @staticmethod
    def build(channels=6, length=200, window=True, nonlinear=False):
        torch = pytest.importorskip("torch")

        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.k = torch.nn.Parameter(torch.randn(channels, length) / 16)

            def forward(self, u):
                n = 2 * length
                k_f = torch.fft.rfft(self.k, n=n) / n
                u_f = torch.fft.rfft(u, n=n)
                prod = u_f * k_f
                if nonlinear:
                    prod = prod * prod.abs()
                y = torch.fft.irfft(prod, n=n, norm="forward")
                return (y[..., :length] if window else y) + 1.0

        torch.manual_seed(0)
        return Module().eval(), (torch.randn(1, channels, length),)


@pytest.mark.parametrize("window", [True, False], ids=["causal-window", "full-circular"])
def test_explicit_rfft_product_irfft_becomes_fft_conv(window) -> None:
    from sparseforge.ir.frontend import load

    module, inputs = _SpectralConv.build(window=window)
    model = load(module, inputs)
    original = ir.to_proto(model)
    report = Pipeline(export())(model).report("FftConv")
    assert [n.op_type for n in model.graph if n.op_type in ("DFT", "FftConv")] == ["FftConv"], report.diagnostics
    assert any(d.code == "fft" and "explicit rfft" in d.message for d in report.diagnostics)
    result = compare(original, model, rtol=FFT_RTOL, runs=2)  # two float32 FFTs of different lengths
    assert result.ok, result.to_dict()


def test_a_nonlinear_spectral_product_is_left_alone() -> None:
    from sparseforge.ir.frontend import load

    module, inputs = _SpectralConv.build(nonlinear=True)
    model = load(module, inputs)
    report = Pipeline(export())(model).report("FftConv")
    assert "FftConv" not in [n.op_type for n in model.graph]
    assert any(d.code == "fft.not-rewritten" and "inverse DFT" in d.message for d in report.diagnostics)
