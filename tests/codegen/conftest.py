"""Shared helpers for the dense codegen tests (TVM CPU schedules)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def host_target():
    """The detected host CPU with 2 threads (the thread count only matters for parallel loops)."""
    pytest.importorskip("tvm")
    from sparseforge.codegen.cpu_target import detect_x86

    return detect_x86(threads=2)


def compile_and_explain(mod, target):
    """Compile a Relax module; returns ``(runner, {prim_func: rule name})``."""
    from sparseforge.codegen import build as cg, vm
    from sparseforge.codegen.schedules import explain

    fused = cg.optimize(mod, target, schedule=False)
    picked = explain(fused, target)
    executable = cg.compile_module(cg.apply_schedules(fused, target), target)
    return vm.VMRunner(executable, threads=target.threads), picked


def assert_close(actual, expected, rtol=1e-4, atol_scale=1e-5):
    """fp32 comparison: relative 1e-4 plus an absolute floor proportional to the output's magnitude."""
    expected = np.asarray(expected, dtype=np.float64)
    atol = atol_scale * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol)
