"""The progress display shows what the cost model measures, with a bar and an estimate of the time left."""

from __future__ import annotations

import logging

from sparseforge import render
from sparseforge.codegen.cost import measured


class _Status:
    def __init__(self):
        self.updates, self.started = [], 0

    def update(self, text):
        self.updates.append(text)

    def start(self):
        self.started += 1


def test_measure_records_reach_the_display() -> None:
    status = _Status()
    handler = render._MeasureProgress(status)
    cost_logger = logging.getLogger("sparseforge.codegen.cost")
    level = cost_logger.level
    cost_logger.addHandler(handler)
    cost_logger.setLevel(logging.DEBUG)
    try:
        for done in range(4):
            measured.log_progress(done, 4, "csr matmul 128x768x768 at 0.05")
        measured.log_progress(4, 4, "csr matmul")
    finally:
        cost_logger.removeHandler(handler)
        cost_logger.setLevel(level)
    assert len(status.updates) == 4 and status.started == 4
    assert "0/4" in status.updates[0] and "s left" not in status.updates[0]
    assert "3/4" in status.updates[-1] and "s left" in status.updates[-1] and "#" in status.updates[-1]
