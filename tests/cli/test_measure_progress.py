"""The progress display shows long steps (the cost model measuring kernels, bench rounds) with a bar and an
estimate of the time left; bench rounds as plain lines (no animation thread while engines are timed)."""

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
    handler = render._StepProgress(status, "measuring kernels for the cost model")
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


class _Console:
    def __init__(self):
        self.lines = []

    def print(self, text, **_):
        self.lines.append(text)


class _StoppedStatus(_Status):
    def __init__(self):
        super().__init__()
        self.stopped = 0

    def stop(self):
        self.stopped += 1


def test_bench_rounds_are_plain_lines() -> None:
    from sparseforge.driver import bench

    status, console = _StoppedStatus(), _Console()
    handler = render._StepProgress(status, "timing engines", live=False, console=console)
    bench_logger = logging.getLogger("sparseforge.driver.bench")
    level = bench_logger.level
    bench_logger.addHandler(handler)
    bench_logger.setLevel(logging.DEBUG)
    try:
        bench.time_engines({"a": lambda: None, "b": lambda: None}, rounds=3, repeat=1, warmup=0, pause=0.0)
    finally:
        bench_logger.removeHandler(handler)
        bench_logger.setLevel(level)
    assert [line.split(": ")[1].split(",")[0] for line in console.lines] == ["round 1 of 3", "round 2 of 3",
                                                                           "round 3 of 3"]
    assert not status.updates and status.started == 0  # never animated
