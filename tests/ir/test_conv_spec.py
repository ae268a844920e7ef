"""ConvSpec: geometry from Conv nodes (auto_pad resolved as ONNX Runtime does), keys, NumPy reference."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from sparseforge.ir.conv import ConvSpec, is_conv_key, reference, spec_of
from sparseforge.runtime.compare import session


def _conv_model(x_shape, w, **attrs):
    x = ir.Value(name="X", shape=ir.Shape(x_shape), type=ir.TensorType(ir.DataType.FLOAT))
    wv = ir.Value(name="W", const_value=ir.tensor(w, name="W"))
    attributes = [ir.AttrString(k, v) if isinstance(v, str) else
                  (ir.AttrInt64(k, v) if isinstance(v, int) else ir.AttrInt64s(k, list(v))) for k, v in attrs.items()]
    node = ir.Node("", "Conv", [x, wv], attributes, name="conv")
    node.outputs[0].name = "Y"
    graph = ir.Graph([x], [node.outputs[0]], nodes=[node], initializers=[wv], opset_imports={"": 18}, name="g")
    return ir.Model(graph, ir_version=9), node


@pytest.mark.parametrize("attrs", [
    dict(pads=[1, 1, 1, 1]),
    dict(strides=[2, 2], pads=[3, 3, 3, 3]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 1]),
    dict(auto_pad="VALID", group=2),
])
def test_spec_of_matches_onnxruntime(attrs) -> None:
    rng = np.random.default_rng(0)
    x_shape = (1, 4, 9, 8)
    group = attrs.get("group", 1)
    w = rng.standard_normal((6, 4 // group, 3, 3)).astype(np.float32)
    model, node = _conv_model(x_shape, w, **attrs)
    spec = spec_of(node, x_shape, w.shape)
    x = rng.standard_normal(x_shape).astype(np.float32)
    (y,) = session(model).run(None, {"X": x})
    assert y.shape == spec.out_shape
    np.testing.assert_allclose(reference(spec, w, x), y, rtol=1e-5, atol=1e-5)


def test_keys_round_trip_and_refusals() -> None:
    spec = ConvSpec((2, 8, 9, 7), 4, (3, 1), (2, 1), (1, 0, 0, 1), (1, 2), 2)
    assert is_conv_key(spec.key()) and ConvSpec.parse(spec.key()) == spec
    assert spec.reduction == 4 * 3 and spec.m == 2 * spec.out_hw[0] * spec.out_hw[1]
    assert not spec.is_pointwise and ConvSpec((1, 4, 3, 3), 4, (1, 1)).is_pointwise
    with pytest.raises(ValueError, match="not a conv2d key"):
        ConvSpec.parse("conv1x1")
    model, node = _conv_model((1, 4, 9), np.ones((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match="spatial dims"):
        spec_of(node, (1, 4, 9), (2, 4, 3))
