"""Long 1-D convolutions become FFT convolutions (``ai.sparseforge.FftConv``).

:class:`FftConvPass` replaces ``Conv(X [B, C, T], W [O, C/g, L], bias)`` (depthwise ``g = C``, grouped or dense
``g = 1``), unit strides and
dilations, explicit (or ``VALID``) pads (a zero ``Pad`` of the signal's last axis in front is folded in), a
constant weight and a static ``X``, when the kernel has at least
:data:`~sparseforge.ir.forms.fft_conv.MIN_TAPS` taps and the FFT needs fewer operations
(:func:`~sparseforge.ir.forms.fft_conv.worth_it`). Causal (``pads = [L-1, 0]``) and centred pads alike. The node
keeps its name and output. The result is not bit-exact: its error is bounded by
:func:`sparseforge.ir.forms.fft_conv.tolerance` (FFT rounding, ``~ eps log2(N) ||x|| ||w||``). Every long
convolution left alone gets a note saying why. The explicit spectral form (``irfft(rfft(x) * K)``, two DFTs around
a complex product) becomes an FftConv too (:mod:`.spectral_conv`).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir import ops
from sparseforge.ir.forms import fft_conv
from sparseforge.ir.keys import DOMAIN
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.rewrites import spectral_conv


class FftConvPass(ReportingPass):
    """Rewrite long 1-D convolutions (depthwise, grouped or dense) into FFT convolutions."""

    name = "FftConv"

    def run(self, model: ir.Model, report: PassReport) -> None:
        opset = ops.model_opset(model)
        for node in list(model.graph):
            if node.op_type != "DFT" or node.graph is None or not int(_attr(node, "inverse", 0)):
                continue
            try:
                found = spectral_conv.match(node, opset)
            except spectral_conv.NoMatch as exc:
                report.note("fft.not-rewritten", f"inverse DFT: {exc}", node.name)
                continue
            name = node.name or "spectral"
            spectral_conv.rewrite(model, found, name)
            report.changed("fft", f"explicit rfft -> product -> irfft: a depthwise convolution of {found.taps} taps, "
                           "one FftConv (within the FFT tolerance)", name)
        for node in list(model.graph):
            if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
                continue
            weight = node.inputs[1].const_value if node.inputs[1] is not None else None
            if weight is None or len(weight.shape) != 3 or weight.shape[-1] < fft_conv.MIN_TAPS:
                continue
            why = _refusal(node, opset)
            if why is None:
                source, pads = _absorb_pad(node)
                length = int(source.shape[-1])
                groups = int(_attr(node, "group", 1))
                ok, why = fft_conv.worth_it(length, int(weight.shape[-1]), pads, groups=groups,
                                            in_channels=int(source.shape[1]), out_channels=int(weight.shape[0]))
                if ok:
                    _rewrite(model, node, source, pads)
                    report.changed("fft", f"{why} (FFT rounding: error ~ eps log2(N) |x| |w|)", node.name)
                    continue
            report.note("fft.not-rewritten", why, node.name)
        ops.ensure_functions(model)


def _attr(node: ir.Node, key: str, default):
    attr = node.attributes.get(key)
    return default if attr is None else attr.value


def _pads(node: ir.Node) -> tuple[int, int]:
    pads = list(_attr(node, "pads", [0, 0]))
    return int(pads[0]), int(pads[1])


def _absorb_pad(node: ir.Node) -> tuple[ir.Value, tuple[int, int]]:
    """The signal and its ``(p0, p1)``: a zero ``Pad`` of the last axis alone (``F.pad(x, (L - 1, 0))`` before a
    causal conv) read only by this Conv is folded into the pads; otherwise the Conv's own input and pads."""
    x, pads = node.inputs[0], _pads(node)
    pad = x.producer()
    if pad is None or pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx") or len(x.uses()) != 1:
        return x, pads
    src = pad.inputs[0]
    amounts = pad.inputs[1].const_value if len(pad.inputs) > 1 and pad.inputs[1] is not None else None
    value = pad.inputs[2] if len(pad.inputs) > 2 else None
    axes = pad.inputs[3] if len(pad.inputs) > 3 else None
    if (amounts is None or axes is not None or str(_attr(pad, "mode", "constant")) != "constant"
            or src.shape is None or len(src.shape) != 3 or not src.shape.is_static()):
        return x, pads
    if value is not None and (value.const_value is None or np.any(value.const_value.numpy() != 0)):
        return x, pads
    amounts = [int(a) for a in amounts.numpy().reshape(-1)]
    if len(amounts) != 6 or any(amounts[i] for i in (0, 1, 3, 4)) or min(amounts) < 0:
        return x, pads
    return src, (pads[0] + amounts[2], pads[1] + amounts[5])


def _refusal(node: ir.Node, opset: int) -> str | None:
    """Why ``node`` (a Conv with a long 1-D kernel) cannot become an FftConv, or None."""
    x, weight = node.inputs[0], node.inputs[1].const_value
    if x.shape is None or not x.shape.is_static() or len(x.shape) != 3:
        return "the input's shape is not static [B, C, T]"
    channels, groups = int(x.shape[1]), int(_attr(node, "group", 1))
    if groups < 1 or channels % groups or weight.shape[1] * groups != channels or weight.shape[0] % groups:
        return f"weight {list(weight.shape)} does not match {channels} input channels in {groups} group(s)"
    if weight.dtype != ir.DataType.FLOAT:
        return f"weight dtype {weight.dtype} (FftConv is float32)"
    if any(int(s) != 1 for s in _attr(node, "strides", [1])) or any(int(d) != 1 for d in _attr(node, "dilations", [1])):
        return "strided or dilated"
    if str(_attr(node, "auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        return "auto_pad SAME_*: export with explicit pads"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and bias.const_value is None:
        return "the bias is not a constant"
    if opset < fft_conv.MIN_OPSET:
        return f"the model imports opset {opset}; the DFT op of FftConv's ONNX body needs {fft_conv.MIN_OPSET}+"
    return None


def _rewrite(model: ir.Model, node: ir.Node, x: ir.Value, pads: tuple[int, int]) -> None:
    w = node.inputs[1]
    channels, taps = int(w.const_value.shape[0]), int(w.const_value.shape[-1])  # output channels
    base = node.name or "conv"
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] is not None else \
        new_initializer(model, f"{base}.fft_bias", np.zeros(channels, np.float32))
    plan = new_initializer(model, f"{base}.fft_plan", fft_conv.plan(int(x.shape[-1]), taps, pads))
    new = ir.Node(DOMAIN, fft_conv.OP_TYPE, [x, w, bias, plan], name=node.name)
    old = node.outputs[0]
    model.graph.insert_before(node, new)
    name, shape, type_ = old.name, old.shape, old.type
    old.replace_all_uses_with(new.outputs[0], replace_graph_outputs=True)
    model.graph.remove(node, safe=True)
    ir.passes.common.RemoveUnusedNodesPass()(model)  # an absorbed Pad
    out = new.outputs[0]
    out.name, out.shape, out.type = name, shape, type_
