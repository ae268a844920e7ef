"""Per-channel constants: dead rows yield their bias, elementwise ops are evaluated on probes."""

from __future__ import annotations

import numpy as np
import pytest
from test_channel_slots import chain

from sparseforge.passes.channels.graph import ChannelGraph


def consts_of(graph: ChannelGraph, name: str) -> np.ndarray:
    return next(c for v, c in graph.consts.values.items() if v.name == name)


def test_dead_rows_hold_their_bias_and_live_rows_are_not_constant() -> None:
    graph = ChannelGraph(chain())
    h = consts_of(graph, "h")
    assert np.isnan(h[0]) and np.isnan(h[2])
    assert h[1] == -1.0 and h[3] == 0.0


@pytest.mark.parametrize("act,expected", [("Relu", [0.0, 0.0]), ("Sigmoid", [1 / (1 + np.e), 0.5]),
                                          ("Tanh", [np.tanh(-1.0), 0.0])])
def test_activations_are_evaluated_not_tabulated(act: str, expected: list[float]) -> None:
    a = consts_of(ChannelGraph(chain(act=act)), "a")
    assert a[[1, 3]] == pytest.approx(expected)
    assert np.isnan(a[0]) and np.isnan(a[2])


def test_the_output_of_an_op_that_mixes_channels_is_not_constant() -> None:
    graph = ChannelGraph(chain(act="Softmax"))
    assert consts_of(graph, "h")[1] == -1.0
    assert np.isnan(consts_of(graph, "a")).all()  # read by conv2, produced by an unsliceable Softmax
