"""Separable 2-D convolutions: a ``kh x kw`` Conv whose kernels are exactly rank 1 becomes a ``kh x 1`` and a
``1 x kw`` Conv (:func:`sparseforge.ir.forms.separable.find`); exact up to summation order.

:class:`SeparablePass` rewrites ``Conv(x, W [O, C/g, kh, kw], b)`` (constant weight, explicit or ``VALID`` pads,
``group`` 1 or depthwise) when a variant reproduces ``W`` at fp32 tolerance and the two kernels hold at most half
of ``W``'s weights. Vertical pads, stride and dilation go to the ``kh x 1`` conv, horizontal ones to the
``1 x kw`` conv (zero padding commutes with a linear per-column or per-row filter). The second conv keeps the
layer's name, output and bias; the first is ``<name>/separable``. Standard ops only.
"""

from __future__ import annotations

import onnx_ir as ir

from sparseforge.ir.forms import separable
from sparseforge.ir.weights import view_of
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.rewrites.candidates import shared_weight


class SeparablePass(ReportingPass):
    """Split 2-D convolutions with rank-1 kernels into a vertical and a horizontal convolution."""

    name = "Separable"

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            view = view_of(node)
            if view is None or node.op_type != "Conv" or len(view.kernel_shape) != 2:
                continue
            stored = view.stored()
            kh, kw = view.kernel_shape
            if stored.dtype.kind != "f" or kh < 2 or kw < 2:
                continue
            if str(_attr(node, "auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
                continue
            if shared_weight(node, view):
                continue
            found, why = separable.find(stored, view.groups)
            report.counts["weights-checked"] += 1
            if found is None:
                report.note("separable.not-rewritten", why, node.name)
                continue
            if 2 * (found.first.size + found.second.size) > stored.size:
                report.note("separable.not-rewritten", f"{why}, but the two kernels would hold "
                            f"{found.first.size + found.second.size} of {stored.size} weights: not worth two passes",
                            node.name)
                continue
            _rewrite(model, node, found)
            report.changed("separable", f"{why}: {found.variant}, {stored.size} -> "
                           f"{found.first.size + found.second.size} weights (exact at fp32 tolerance)", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)


def _attr(node: ir.Node, key: str, default):
    attr = node.attributes.get(key)
    return default if attr is None else attr.value


def _axis_attrs(node: ir.Node, axis: str, weight, depthwise: bool) -> list[ir.Attr]:
    """Attributes of the conv along ``axis`` ("vertical": H, "horizontal": W) only."""
    top, left, bottom, right = (list(_attr(node, "pads", [0, 0, 0, 0])) + [0, 0, 0, 0])[:4]
    sh, sw = list(_attr(node, "strides", [1, 1]))
    dh, dw = list(_attr(node, "dilations", [1, 1]))
    if axis == "vertical":
        pads, strides, dilations = [top, 0, bottom, 0], [sh, 1], [dh, 1]
    else:
        pads, strides, dilations = [0, left, 0, right], [1, sw], [1, dw]
    return [ir.AttrInt64s("pads", [int(p) for p in pads]), ir.AttrInt64s("strides", [int(s) for s in strides]),
            ir.AttrInt64s("dilations", [int(d) for d in dilations]),
            ir.AttrInt64s("kernel_shape", [int(k) for k in weight.shape[2:]]),
            ir.AttrInt64("group", int(weight.shape[0]) if depthwise else 1)]


def _rewrite(model: ir.Model, node: ir.Node, found: separable.Separable) -> None:
    base = node.name or "conv"
    second_axis = "horizontal" if found.first_axis == "vertical" else "vertical"
    first = ir.Node("", "Conv", [node.inputs[0], new_initializer(model, f"{base}.separable_first", found.first)],
                    attributes=_axis_attrs(node, found.first_axis, found.first, found.first_depthwise),
                    name=f"{base}/separable")
    hidden = first.outputs[0]
    hidden.name = f"{node.outputs[0].name or base}_separable"
    hidden.type = node.inputs[0].type
    x = node.inputs[0]
    if x.shape is not None and x.shape.is_static() and len(x.shape) == 4:
        n, _, h, w = (int(d) for d in x.shape)
        top, left, bottom, right = (list(_attr(node, "pads", [0, 0, 0, 0])) + [0, 0, 0, 0])[:4]
        sh, sw = list(_attr(node, "strides", [1, 1]))
        dh, dw = list(_attr(node, "dilations", [1, 1]))
        kh, kw = node.inputs[1].const_value.shape[2:]
        if found.first_axis == "vertical":
            h = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
        else:
            w = (w + left + right - dw * (kw - 1) - 1) // sw + 1
        hidden.shape = ir.Shape([n, int(found.first.shape[0]), int(h), int(w)])
    model.graph.insert_before(node, first)
    attrs = _axis_attrs(node, second_axis, found.second, found.second_depthwise)
    node.replace_input_with(0, hidden)
    node.replace_input_with(1, new_initializer(model, f"{base}.separable_second", found.second))
    for key in ("pads", "strides", "dilations", "kernel_shape", "group", "auto_pad"):
        node.attributes.pop(key, None)
    for attr in attrs:
        node.attributes[attr.name] = attr
