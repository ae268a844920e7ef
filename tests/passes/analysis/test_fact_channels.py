"""Fact ``channels``: dead output and input channels."""

from __future__ import annotations

import numpy as np
from helpers import init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir import keys
from sparseforge.passes.analysis import get
from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.analysis.channels import DeadChannels, dead_rows

DEAD_INPUTS = {
    "matmul_kn": [2, 3, 6, 7, 10, 11, 14, 15],
    "matmul_const_first": [2, 3, 6, 7, 10, 11, 14, 15],
    "gemm_transb1": [2, 3, 6, 7, 10, 11, 14, 15],
    "gemm_transb0": [2, 3, 6, 7, 10, 11, 14, 15],
    "conv1x1": [2, 3, 6, 7, 10, 11, 14, 15],
    "conv2x2": [],           # every input channel owns 4 taps, two of them nonzero
    "conv_grouped": [],
    "conv_depthwise": [2, 5],  # channel c feeds only output c
}


def test_dead_channels_in_every_layout(analysed) -> None:
    assert analysed.layer["dead_output_channels"] == [2, 5]
    assert analysed.layer["dead_input_channels"] == DEAD_INPUTS[analysed.layout]
    assert analysed.node.meta[keys.META_FACTS]["channels"] == DeadChannels([2, 5], DEAD_INPUTS[analysed.layout])


def test_conv_dead_input_channels_across_groups() -> None:
    w = np.ones((4, 3, 3, 3), np.float32)
    w[:, 1] = 0  # input channel 1 unused
    model = to_ir(make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="c")], [vinfo("x", [1, 3, 5, 5])],
                             [vinfo("y", [1, 4, 3, 3])], [init("W", w)]))
    (layer,) = StructureAnalysisPass()(model).report.details["layers"]
    assert layer["dead_input_channels"] == [1]
    assert layer["shape"] == [4, 27]
    # grouped: 2 groups of 3 input channels; channel 1 of group 1 (global 4) is dead only in group 1's rows
    wg = np.ones((4, 3, 1, 1), np.float32)
    wg[2:, 1] = 0
    wg[:2, 0] = 0
    model = to_ir(make_model([helper.make_node("Conv", ["x", "W"], ["y"], name="g", group=2)],
                             [vinfo("x", [1, 6, 2, 2])], [vinfo("y", [1, 4, 2, 2])], [init("W", wg)]))
    (layer,) = StructureAnalysisPass()(model).report.details["layers"]
    assert layer["dead_input_channels"] == [0, 4]


def test_dead_rows_and_nan_is_nonzero() -> None:
    m = np.zeros((3, 4), np.float32)
    m[1, 2] = np.nan
    assert dead_rows(m) == [0, 2]


def test_channel_cells_count_channels() -> None:
    fields = get("channels").to_fields(DeadChannels([2, 5], [1]))
    assert fields == {"dead_output_channels": [2, 5], "dead_input_channels": [1]}
    assert get("channels").cells(fields) == ("2", "1")
