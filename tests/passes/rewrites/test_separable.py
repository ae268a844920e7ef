"""Separable 2-D convolutions (rank-1 kernels) become a vertical and a horizontal Conv, exactly; Conv low rank."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_equivalent, init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir.forms import separable
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import export


def _conv(w, *, group=1, pads=(2, 2, 2, 2), strides=(1, 1), dilations=(1, 1), bias=True, hw=(20, 18), seed=1):
    rng = np.random.default_rng(seed)
    o, cg, kh, kw = w.shape
    c = cg * group
    inits = [init("w", w.astype(np.float32))]
    inputs = ["x", "w"]
    if bias:
        inits.append(init("b", rng.standard_normal(o).astype(np.float32)))
        inputs.append("b")
    h = (hw[0] + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wd = (hw[1] + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    node = helper.make_node("Conv", inputs, ["y"], name="conv", group=group, pads=list(pads), strides=list(strides),
                            dilations=list(dilations))
    return make_model([node], [vinfo("x", [2, c, *hw])], [vinfo("y", [2, o, h, wd])], inits)


def _run(proto, pass_name="Separable"):
    model = to_ir(proto)
    return model, Pipeline(export())(model).report(pass_name)


def _rank1(rng, o, c, kh, kw):
    return np.einsum("ocp,ocq->ocpq", rng.standard_normal((o, c, kh)), rng.standard_normal((o, c, kw)))


@pytest.mark.parametrize("geometry", [dict(), dict(strides=(2, 1)), dict(strides=(1, 2), pads=(1, 3, 2, 0)),
                                      dict(dilations=(2, 1), pads=(4, 2, 4, 2))], ids=["same", "sh2", "sw2", "dil"])
def test_depthwise_rank1_kernels_split(geometry) -> None:
    w = _rank1(np.random.default_rng(0), 8, 1, 5, 5)
    proto = _conv(w, group=8, **geometry)
    model, report = _run(proto)
    assert [(n.op_type, n.name) for n in model.graph] == [("Conv", "conv/separable"), ("Conv", "conv")]
    assert any(d.code == "separable" and "depthwise" in d.message for d in report.diagnostics)
    assert_equivalent(proto, model)


@pytest.mark.parametrize("variant", ["input-vertical", "input-horizontal", "output-vertical", "output-horizontal"])
def test_shared_factor_variants(variant) -> None:
    rng = np.random.default_rng(3)
    o, c, k = 12, 6, 3
    shared = rng.standard_normal((c if variant.startswith("input") else o, k))
    rest = rng.standard_normal((o, c, k))
    if variant == "input-vertical":
        w = np.einsum("cp,ocq->ocpq", shared, rest)
    elif variant == "input-horizontal":
        w = np.einsum("cq,ocp->ocpq", shared, rest)
    elif variant == "output-vertical":
        w = np.einsum("op,ocq->ocpq", shared, rest)
    else:
        w = np.einsum("oq,ocp->ocpq", shared, rest)
    proto = _conv(w, pads=(1, 1, 1, 1))
    found, why = separable.find(w.astype(np.float32), 1)
    assert found is not None and found.variant == variant, why
    model, report = _run(proto)
    assert [n.op_type for n in model.graph] == ["Conv", "Conv"]
    assert_equivalent(proto, model)


def test_near_separable_and_small_kernels_stay() -> None:
    rng = np.random.default_rng(5)
    w = _rank1(rng, 8, 1, 5, 5)
    w[3, 0, 2, 2] += 0.05
    model, report = _run(_conv(w, group=8))
    assert [n.op_type for n in model.graph] == ["Conv"]
    assert any(d.code == "separable.not-rewritten" and "not of rank 1" in d.message for d in report.diagnostics)
    model, report = _run(_conv(_rank1(rng, 8, 1, 3, 3), group=8, pads=(1, 1, 1, 1)))
    assert [n.op_type for n in model.graph] == ["Conv"]
    assert any("not worth two passes" in d.message for d in report.diagnostics)


def test_conv_low_rank_becomes_conv_then_1x1() -> None:
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((48, 4)) @ rng.standard_normal((4, 32 * 9))).reshape(48, 32, 3, 3)
    proto = _conv(w, pads=(1, 1, 1, 1), strides=(2, 2))
    model, report = _run(proto, "LowRank")
    convs = [n for n in model.graph if n.op_type == "Conv"]
    assert [n.name for n in convs] == ["conv/low_rank", "conv"]
    assert tuple(convs[0].inputs[1].const_value.shape) == (4, 32, 3, 3)
    assert tuple(convs[1].inputs[1].const_value.shape) == (48, 4, 1, 1)
    assert_equivalent(proto, model)
