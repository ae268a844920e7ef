"""Fact ``channels``: dead output channels (all-zero weight rows) and dead input channels of the op.

Input channels are the op's (for Conv: indexed across groups; a channel is dead when every weight reading it is
zero); for MatMul/Gemm they are the zero columns of the matrix. NaN counts as nonzero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact


@dataclasses.dataclass(frozen=True)
class DeadChannels:
    outputs: list[int]
    inputs: list[int]


def dead_rows(matrix: np.ndarray) -> list[int]:
    """Indices of all-zero rows."""
    return [int(i) for i in np.flatnonzero(~(matrix != 0).any(axis=1))]


def dead_input_channels(view: WeightView, matrix: np.ndarray) -> list[int]:
    """Input channels of the op whose weights are all zero (Conv: across groups; MatMul/Gemm: zero columns)."""
    if view.kernel_shape == ():  # MatMul/Gemm (and their quantized forms)
        return [int(j) for j in np.flatnonzero(~(matrix != 0).any(axis=0))]
    out_ch = matrix.shape[0]
    groups = view.groups
    k = view.kernel_size
    per_group_in = matrix.shape[1] // k
    per_group_out = out_ch // groups
    nz = (matrix != 0).reshape(groups, per_group_out, per_group_in, k).any(axis=(1, 3))  # [groups, in/g]
    return [int(i) for i in np.flatnonzero(~nz.reshape(-1))]


class Channels(Fact):
    name = "channels"
    fields = ("dead_output_channels", "dead_input_channels")
    columns = (("dead out", "right"), ("dead in", "right"))

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> DeadChannels:
        return DeadChannels(dead_rows(matrix), dead_input_channels(view, matrix))

    def to_fields(self, value: DeadChannels) -> dict[str, Any]:
        return {"dead_output_channels": value.outputs, "dead_input_channels": value.inputs}

    def cells(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(len(fields["dead_output_channels"])), str(len(fields["dead_input_channels"])))


FACT = Channels()
