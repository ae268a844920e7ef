"""Per-channel constants: for each channel tensor, the channels holding one value at every position.

``values[v][c]`` is that value, NaN when channel ``c`` of ``v`` is not constant. A dead weight row yields its bias;
elementwise ops are evaluated with ``onnx.reference`` on a one-element-per-channel probe (so act(0) = 0 is
computed, not tabulated); depthwise Conv, BatchNorm, pooling, reductions, Pad and Concat have explicit rules
(zero padding breaks constancy unless the constant is 0). ``lost[v]`` names the node where channels of ``v`` (or of
a tensor it derives from) stopped being constant, for messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx.reference
import onnx_ir as ir

from sparseforge.ir.weights import WeightView, constant_array
from sparseforge.passes.channels.shapes import (
    attr_str,
    conv_unpadded,
    dim,
    ints,
    np_dtype,
    onnx_dtype,
    rank,
    reduce_axes,
)

logger = logging.getLogger(__name__)

#: Ops that act on each channel separately and map a constant channel to the same constant.
CHANNEL_PRESERVING_OPS = frozenset({"MaxPool", "GlobalMaxPool", "GlobalAveragePool", "Resize", "Upsample"})
REDUCE_OPS = frozenset({"ReduceMean", "ReduceMax", "ReduceMin"})


class ChannelConstants:
    """Per-channel constants of every channel tensor, filled node by node in graph order."""

    def __init__(self, opset: int):
        self.opset = opset
        self.values: dict[ir.Value, np.ndarray] = {}
        self.lost: dict[ir.Value, str] = {}

    def __getitem__(self, value: ir.Value) -> np.ndarray:
        return self.values[value]

    def set(self, value: ir.Value, consts: np.ndarray) -> None:
        self.values[value] = consts

    def set_unknown(self, value: ir.Value, count: int) -> None:
        self.values[value] = np.full(count, np.nan)

    def track_loss(self, node: ir.Node) -> None:
        """Record ``node`` in ``lost`` for outputs where an input's constant channel became non-constant."""
        for out in node.outputs:
            if out not in self.values or out in self.lost:
                continue
            y = self.values[out]
            for value in node.inputs:
                x = self.values.get(value) if value is not None else None
                if x is None:
                    continue
                if len(x) == len(y) and np.any(~np.isnan(x) & np.isnan(y)):
                    self.lost[out] = f"{node.op_type} '{node.name}'"
                    break
                if value in self.lost:
                    self.lost[out] = self.lost[value]
                    break

    # ------------------------------------------------------------------ rules (return the output's constants)

    @staticmethod
    def weight_output(view: WeightView, bias: np.ndarray) -> np.ndarray:
        """A weight op's output: ``bias`` on dead rows (``bias`` per output channel, NaN where it varies)."""
        dead = ~(view.matrix() != 0).any(axis=1)
        return np.where(dead, bias, np.nan)

    def depthwise(self, node: ir.Node, view: WeightView, x: ir.Value) -> np.ndarray:
        w = view.matrix()
        count = w.shape[0]
        bias = view.bias_array()
        b = np.zeros(count) if bias is None else bias.astype(np.float64)
        dead_w = ~(w != 0).any(axis=1)
        xin = self.values[x]
        consts = np.full(count, np.nan)
        consts[dead_w | (xin == 0)] = b[dead_w | (xin == 0)]
        if conv_unpadded(node):
            known = ~np.isnan(xin) & ~(dead_w | (xin == 0))
            consts[known] = xin[known] * w[known].astype(np.float64).sum(axis=1) + b[known]
        return consts

    def batchnorm(self, node: ir.Node, x: ir.Value, params: Sequence[np.ndarray]) -> np.ndarray:
        scale, bias, mean, var = (p.astype(np.float64) for p in params)
        eps = float(node.attributes["epsilon"].value) if "epsilon" in node.attributes else 1e-5
        return (self.values[x] - mean) / np.sqrt(var + eps) * scale + bias

    def concat(self, inputs: Sequence[ir.Value]) -> np.ndarray:
        """Concat along the channel axis."""
        return np.concatenate([self.values[v] for v in inputs])

    def agree(self, inputs: Sequence[ir.Value]) -> np.ndarray:
        """Concat along another axis: constant where every input holds the same constant."""
        stacked = np.stack([self.values[v] for v in inputs])
        same = np.all(stacked == stacked[0], axis=0)
        return np.where(same, stacked[0], np.nan)

    def channelwise(self, node: ir.Node, x: ir.Value) -> np.ndarray:
        """Pooling, reductions over other axes, Resize, Pad."""
        c = self.values[x]
        op = node.op_type
        if op in CHANNEL_PRESERVING_OPS or op in REDUCE_OPS:
            if op == "Resize" and attr_str(node, "coordinate_transformation_mode") == "tf_crop_and_resize":
                return np.where(c == 0, 0.0, np.nan)
            return c.copy()
        if op == "ReduceSum":
            axes = reduce_axes(node, rank(x))
            sizes = [dim(x, a) for a in axes or []]
            if any(s is None for s in sizes):
                return np.where(c == 0, 0.0, np.nan)
            return c * float(np.prod(sizes))
        if op == "AveragePool":
            padded = any(p != 0 for p in ints(node, "pads")) or attr_str(node, "auto_pad") not in ("", "NOTSET",
                                                                                                 "VALID")
            include = int(node.attributes["count_include_pad"].value) if "count_include_pad" in node.attributes else 0
            return c.copy() if (not padded or not include) else np.where(c == 0, 0.0, np.nan)
        if op == "Pad":
            mode = attr_str(node, "mode") or "constant"
            if mode != "constant":
                return c.copy()
            pad_value = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None \
                else np.zeros(())
            if pad_value is None:
                return np.full(len(c), np.nan)
            return np.where(c == float(np.asarray(pad_value).reshape(-1)[0]), c, np.nan)
        return np.full(len(c), np.nan)

    def evaluate(self, node: ir.Node, count: int, axes: Mapping[ir.Value, int]) -> np.ndarray:
        """Constants of an elementwise ``node``'s output, running the op on one-element-per-channel probes.

        ``axes`` gives the channel axis of each non-constant input; the others must be initializers.
        """
        feeds: dict[str, np.ndarray] = {}
        known = np.ones(count, dtype=bool)
        names: list[str] = []
        inputs_info = []
        for i, value in enumerate(node.inputs):
            name = f"in{i}"
            names.append(name if value is not None else "")
            if value is None:
                continue
            array = constant_array(value)
            if array is None:
                consts = self.values[value]
                known &= ~np.isnan(consts)
                shape = [1] * rank(value)
                shape[axes[value]] = count
                array = np.where(np.isnan(consts), 0.0, consts).reshape(shape).astype(np_dtype(value))
            feeds[name] = array
            inputs_info.append(onnx.helper.make_tensor_value_info(name, onnx_dtype(array), array.shape))
        if not known.any():
            return np.full(count, np.nan)
        try:
            proto = ir.serde.serialize_node(node)
            del proto.input[:]
            proto.input.extend(names)
            del proto.output[:]
            proto.output.extend(["out"] + [f"unused{k}" for k in range(len(node.outputs) - 1)])
            graph = onnx.helper.make_graph([proto], "probe", inputs_info, [
                onnx.helper.make_tensor_value_info("out", onnx.TensorProto.UNDEFINED, None)])
            opset = [onnx.helper.make_opsetid("", self.opset)]
            session = onnx.reference.ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=opset))
            result = np.asarray(session.run(None, feeds)[0], dtype=np.float64)
        except Exception as exc:  # an op the reference evaluator cannot run: channels stay "not constant"
            logger.debug("cannot evaluate %s %s on probes: %s", node.op_type, node.name, exc)
            return np.full(count, np.nan)
        if result.size != count:
            return np.full(count, np.nan)
        out = result.reshape(-1)
        return np.where(known & np.isfinite(out), out, np.nan)
