"""TVM's C++ warnings are routed to the log, not the user's terminal."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("tvm")

from sparseforge.codegen import _tvm  # noqa: E402

pytestmark = pytest.mark.tvm


def _leave_a_block_builder_open() -> None:
    bb = _tvm.relax.BlockBuilder()
    x = _tvm.relax.Var("x", _tvm.relax.TensorType((2,), "float32"))
    bb.begin_scope([x])
    bb._begin_dataflow_block()  # noqa: SLF001 - an unfinished block, as an importer error leaves it
    del bb


def test_native_warnings_go_to_the_debug_log(capfd, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="sparseforge.tvm"):
        with _tvm.native_logs_to_debug():
            _leave_a_block_builder_open()
    assert "BlockBuilder" not in capfd.readouterr().err
    assert "BlockBuilder" in caplog.text
