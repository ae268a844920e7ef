"""FastMath: sigmoid and SiLU become vectorizable polynomial forms, exact to float32 tolerance over the whole
range (saturating, never inf/NaN, at large ``|x|``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

pytest.importorskip("tvm")

from conftest import compile_and_explain  # noqa: E402

from sparseforge.codegen import _tvm  # noqa: E402
from sparseforge.codegen.schedules.relax_fast_math import FastMath  # noqa: E402

pytestmark = pytest.mark.tvm
relax = _tvm.relax


def _module():
    x = relax.Var("x", relax.TensorType((4, 3, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            sig = bb.emit(relax.op.sigmoid(x))
            silu = bb.emit(relax.op.nn.silu(x))
            swish = bb.emit(relax.op.multiply(x, relax.op.sigmoid(x)))
            out = bb.emit_output(relax.Tuple([sig, silu, swish]))
        bb.emit_func_output(out)
    return bb.get()


def test_sigmoid_and_silu_are_rewritten():
    mod = FastMath()(_module())
    names = [gv.name_hint for gv, _ in mod.functions_items()]
    assert "fast_sigmoid" in names and "fast_silu" in names, names
    main = mod["main"].script()
    assert "R.sigmoid" not in main and "R.nn.silu" not in main, main


def test_fast_sigmoid_and_silu_numerics(host_target):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 3, 8, 8)) * 6).astype(np.float32)
    x.flat[:6] = [-1e4, -100.0, -88.0, 88.0, 100.0, 1e4]  # saturation, fast_exp's clamp
    runner, _ = compile_and_explain(_module(), host_target)
    sig, silu, swish = runner(x)
    x64 = x.astype(np.float64)
    want = expit(x64)
    assert np.isfinite(sig).all() and np.isfinite(silu).all()
    np.testing.assert_allclose(sig, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(silu, x64 * want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(swish, x64 * want, rtol=1e-5, atol=1e-6)
