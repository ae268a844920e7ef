"""The one VM runner: NumPy in/out, tuple outputs flattened in order, thread pool, timing and profile hooks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from sparseforge.codegen import _tvm, vm  # noqa: E402
from sparseforge.codegen.build import build  # noqa: E402
from sparseforge.codegen.cpu_target import detect_x86  # noqa: E402

pytestmark = pytest.mark.tvm
relax = _tvm.relax


@pytest.fixture(scope="module")
def two_outputs():
    """main(x) -> (x + 1, (x * 2, relu(x)))."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.add(x, relax.const(1.0, "float32")))
            b = bb.emit(relax.op.multiply(x, relax.const(2.0, "float32")))
            c = bb.emit(relax.op.nn.relu(x))
            out = bb.emit_output(relax.Tuple([a, relax.Tuple([b, c])]))
        bb.emit_func_output(out)
    return build(bb.get(), detect_x86(2))


def test_runner_flattens_nested_outputs_in_order(two_outputs) -> None:
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    got = vm.VMRunner(two_outputs, threads=1)(x)
    assert len(got) == 3
    np.testing.assert_allclose(got[0], x + 1)
    np.testing.assert_allclose(got[1], x * 2)
    np.testing.assert_allclose(got[2], np.maximum(x, 0))


def test_bound_call_profile_and_threads(two_outputs) -> None:
    x = np.ones((4, 8), np.float32)
    runner = vm.VMRunner(two_outputs, threads=2)
    runner.bound([x])()
    assert vm.set_num_threads(1) == 1
    profile = runner.profile(x, repeats=2)
    assert profile and all(t.seconds >= 0 and t.calls >= 1 for t in profile.values())


def test_library_path(two_outputs, tmp_path) -> None:
    path = tmp_path / "lib.so"
    two_outputs.export_library(str(path))
    got = vm.run(str(path), [np.zeros((4, 8), np.float32)], threads=1)
    np.testing.assert_allclose(got[0], np.ones((4, 8)))
