"""Every CPU schedule rule, numerically against NumPy, and that the intended rule matched.

Shapes deliberately do not divide the tile sizes (odd M/N/K, channel counts that are not a
multiple of the vector width, odd spatial sizes). Each group of cases is one Relax module with
several outputs, so the file compiles only a handful of modules.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from conftest import assert_close, compile_and_explain  # noqa: E402

from sparseforge.codegen import _tvm  # noqa: E402
from sparseforge.codegen.cpu_target import CompileTarget  # noqa: E402
from sparseforge.codegen.schedules import kernels_winograd as winograd  # noqa: E402
from sparseforge.codegen.schedules.kernels_conv import conv_tile  # noqa: E402
from sparseforge.codegen.schedules.kernels_dense import dense_tile_m, dense_tile_n  # noqa: E402

pytestmark = pytest.mark.tvm

relax = _tvm.relax
rng = np.random.default_rng(0)


def _rand(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype("float32")


def _var(name, shape):
    return relax.Var(name, relax.TensorType(shape, "float32"))


def _build(params, body):
    """A Relax ``main(*params)`` returning the tuple of tensors ``body(bb, *params)`` emits."""
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            outs = body(bb, *params)
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return bb.get()


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _rules_of(picked, fragment):
    return {name: rule for name, rule in picked.items() if fragment in name}


# ---------------------------------------------------------------------------------------------
# Dense: Gemm / MatMul / batched matmul with fused epilogues


def _dense_case():
    w1, b1 = _rand(53, 41, scale=0.2), _rand(41)
    w2 = _rand(33, 19, scale=0.2)
    wg = _rand(100, 1000, scale=0.1)
    inputs = {
        "x1": _rand(37, 53), "x2": _rand(2, 7, 33), "r2": _rand(2, 7, 19),
        "a3": _rand(3, 13, 24), "b3": _rand(3, 24, 29), "a4": _rand(2, 3, 9, 16), "b4": _rand(3, 16, 10),
        "g": _rand(1, 100),
    }
    params = [_var(k, v.shape) for k, v in inputs.items()]

    def body(bb, x1, x2, r2, a3, b3, a4, b4, g):
        op = relax.op
        y1 = bb.emit(op.nn.gelu(op.add(op.matmul(x1, relax.const(w1)), relax.const(b1))))
        y2 = bb.emit(op.add(op.matmul(x2, relax.const(w2)), r2))
        y3 = bb.emit(op.matmul(a3, b3))
        y4 = bb.emit(op.matmul(a4, b4))
        y5 = bb.emit(op.nn.relu(op.matmul(g, relax.const(wg))))
        return [y1, y2, y3, y4, y5]

    i = inputs
    expected = [
        _gelu(i["x1"].astype(np.float64) @ w1 + b1),
        i["x2"].astype(np.float64) @ w2 + i["r2"],
        i["a3"].astype(np.float64) @ i["b3"],
        np.matmul(i["a4"].astype(np.float64), i["b4"]),
        np.maximum(i["g"].astype(np.float64) @ wg, 0.0),
    ]
    return _build(params, body), list(inputs.values()), expected


@pytest.fixture(scope="module")
def dense_result(host_target):
    mod, inputs, expected = _dense_case()
    runner, picked = compile_and_explain(mod, host_target)
    return runner(*inputs), expected, picked


def test_dense_weights_packed_at_compile_time(host_target):
    from sparseforge.codegen import build as cg

    mod, _, _ = _dense_case()
    fused = cg.optimize(mod, host_target, schedule=False)
    packs = [b.value for b in fused["main"].body.blocks[0].bindings
             if "pack_panels" in str(getattr(b.value, "args", [""])[0])]
    # Only the two activation operands (b3, b4: function inputs) are packed at run time.
    assert len(packs) == 2, packs
    for call in packs:
        assert all(isinstance(a, relax.Var) for a in call.args[1]), call


def test_dense_numerics(dense_result):
    outputs, expected, _ = dense_result
    for got, want in zip(outputs, expected, strict=True):
        assert got.shape == want.shape
        assert_close(got, want)


def test_dense_rule_matched(dense_result):
    _, _, picked = dense_result
    dense = _rules_of(picked, "sf_dense")
    assert len(dense) == 5, picked
    assert set(dense.values()) == {"Dense"}, dense
    assert "Fallback" not in picked.values(), picked
    assert "" not in picked.values(), picked


# ---------------------------------------------------------------------------------------------
# Convolutions in NCHWc: NCHW-input stride-2 kxk + ReLU, max pooling, depthwise (narrow and wide,
# stride 1 and 2), 1x1 with a channel count that is not a multiple of the vector width, kxk with
# residual add, global average pooling and the classifier.


def _conv_case():
    w1, b1 = _rand(20, 3, 3, 3, scale=0.3), _rand(20)
    w2, b2 = _rand(20, 1, 3, 3, scale=0.3), _rand(20)
    w3, b3 = _rand(24, 20, 1, 1, scale=0.3), _rand(24)
    w4 = _rand(24, 1, 3, 3, scale=0.3)
    w5 = _rand(24, 24, 3, 3, scale=0.1)
    w6 = _rand(24, 10, scale=0.3)
    wa = _rand(16, 16, 1, 1, scale=0.3)
    wd = _rand(16, 1, 3, 3, scale=0.3)
    x = _rand(1, 3, 19, 17)
    xw = _rand(1, 16, 8, 40)
    params = [_var("x", x.shape), _var("xw", xw.shape)]

    def body(bb, xv, xwv):
        op, nn, c = relax.op, relax.op.nn, relax.const
        c1 = bb.emit(nn.relu(op.add(nn.conv2d(xv, c(w1), strides=2, padding=1), c(b1.reshape(1, 20, 1, 1)))))
        p1 = bb.emit(nn.max_pool2d(c1, pool_size=[3, 3], strides=[1, 1], padding=[1, 1, 1, 1]))
        c2 = bb.emit(op.clip(op.add(nn.conv2d(p1, c(w2), padding=1, groups=20), c(b2.reshape(1, 20, 1, 1))), 0.0, 6.0))
        c3 = bb.emit(op.add(nn.conv2d(c2, c(w3)), c(b3.reshape(1, 24, 1, 1))))
        c4 = bb.emit(nn.conv2d(c3, c(w4), strides=2, padding=1, groups=24))
        c5 = bb.emit(op.add(nn.conv2d(c4, c(w5), padding=1), c4))
        pooled = bb.emit(op.reshape(op.mean(c5, axis=[2, 3], keepdims=True), [1, 24]))
        logits = bb.emit(op.matmul(pooled, c(w6)))
        wide = bb.emit(nn.conv2d(nn.conv2d(xwv, c(wa)), c(wd), padding=1, groups=16))
        return [c5, logits, wide]

    def conv(a, w, stride=1, pad=0, groups=1):
        t = __import__("torch")
        return t.nn.functional.conv2d(t.from_numpy(a.astype(np.float64)), t.from_numpy(w.astype(np.float64)),
                                      stride=stride, padding=pad, groups=groups).numpy()

    r1 = np.maximum(conv(x, w1, 2, 1) + b1.reshape(1, 20, 1, 1), 0)
    t = __import__("torch")
    p1 = t.nn.functional.max_pool2d(t.from_numpy(r1), 3, 1, 1).numpy()
    r2 = np.clip(conv(p1, w2, 1, 1, 20) + b2.reshape(1, 20, 1, 1), 0, 6)
    r3 = conv(r2, w3) + b3.reshape(1, 24, 1, 1)
    r4 = conv(r3, w4, 2, 1, 24)
    r5 = conv(r4, w5, 1, 1) + r4
    logits = r5.mean(axis=(2, 3)) @ w6
    wide = conv(conv(xw, wa), wd, 1, 1, 16)
    return _build(params, body), [x, xw], [r5, logits, wide]


@pytest.fixture(scope="module")
def conv_result(host_target):
    pytest.importorskip("torch")
    mod, inputs, expected = _conv_case()
    runner, picked = compile_and_explain(mod, host_target)
    return runner(*inputs), expected, picked


def test_conv_numerics(conv_result):
    outputs, expected, _ = conv_result
    for got, want in zip(outputs, expected, strict=True):
        assert got.shape == want.shape
        assert_close(got, want)


def test_conv_rules_matched(conv_result):
    _, _, picked = conv_result
    convs = _rules_of(picked, "sf_conv2d_nchwc")
    depthwise = _rules_of(picked, "sf_depthwise_nchwc")
    assert len(convs) == 4 and set(convs.values()) == {"Conv2dNCHWc"}, picked
    assert len(depthwise) == 3 and set(depthwise.values()) == {"DepthwiseNCHWc"}, picked
    assert set(_rules_of(picked, "sf_dense").values()) == {"Dense"}, picked
    assert picked["max_pool2d"] == "RowReduction" and picked["mean"] == "RowReduction", picked
    assert "Fallback" not in picked.values() and "" not in picked.values(), picked


# ---------------------------------------------------------------------------------------------
# Row reductions (layer norm, softmax, mean), injective functions and the fallback


def _reduction_case():
    g1, be1 = _rand(37), _rand(37)
    g2, be2 = _rand(64), _rand(64)
    inputs = {"n1": _rand(5, 37), "n2": _rand(4, 64), "s": _rand(3, 5, 48), "m": _rand(6, 80),
              "t": _rand(7, 9, 5), "u": _rand(9, 7, 5), "am": _rand(4, 11), "cs": _rand(6, 21)}
    params = [_var(k, v.shape) for k, v in inputs.items()]

    def body(bb, n1, n2, s, m, t, u, am, cs):
        op, c = relax.op, relax.const
        y1 = bb.emit(op.nn.layer_norm(n1, c(g1), c(be1), axes=[-1], epsilon=1e-5))
        y2 = bb.emit(op.nn.layer_norm(n2, c(g2), c(be2), axes=[-1], epsilon=1e-5))
        y3 = bb.emit(op.nn.softmax(s, axis=-1))
        y4 = bb.emit(op.mean(m, axis=[-1]))
        y5 = bb.emit(op.add(op.permute_dims(t, [1, 0, 2]), u))
        y6 = bb.emit(op.astype(op.argmax(am, axis=-1), "float32"))
        y7 = bb.emit(op.sum(cs, axis=[0]))  # reduction over the leading axis: fallback
        return [y1, y2, y3, y4, y5, y6, y7]

    def ln(x, g, b):
        x = x.astype(np.float64)
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * g + b

    i = inputs
    e = np.exp(i["s"].astype(np.float64) - i["s"].max(-1, keepdims=True))
    expected = [ln(i["n1"], g1, be1), ln(i["n2"], g2, be2), e / e.sum(-1, keepdims=True),
                i["m"].astype(np.float64).mean(-1), np.transpose(i["t"], (1, 0, 2)) + i["u"],
                np.argmax(i["am"], -1).astype(np.float64), i["cs"].astype(np.float64).sum(0)]
    return _build(params, body), list(inputs.values()), expected


@pytest.fixture(scope="module")
def reduction_result(host_target):
    mod, inputs, expected = _reduction_case()
    runner, picked = compile_and_explain(mod, host_target)
    return runner(*inputs), expected, picked


def test_reduction_numerics(reduction_result):
    outputs, expected, _ = reduction_result
    for got, want in zip(outputs, expected, strict=True):
        assert got.shape == want.shape
        assert_close(got, want)


def test_reduction_rules_matched(reduction_result):
    _, _, picked = reduction_result
    assert set(_rules_of(picked, "layer_norm").values()) == {"RowReduction"}, picked
    assert set(_rules_of(picked, "softmax").values()) == {"RowReduction"}, picked
    assert set(_rules_of(picked, "mean").values()) == {"RowReduction"}, picked
    assert set(_rules_of(picked, "transpose").values()) == {"Injective"}, picked
    # argmax is legalized as one (index, value) reduction with exact -inf identities and ties to the first index
    # (codegen/legalize.py); RowReduction does not take two-value reducers, so Fallback schedules it
    assert set(_rules_of(picked, "argmax").values()) == {"Fallback"}, picked
    assert picked["sum"] == "Fallback", picked
    assert "" not in picked.values(), picked


# ---------------------------------------------------------------------------------------------
# AVX2 code path (CI machines without AVX-512): 8-lane kernels, run on this host


def test_avx2_target_kernels():
    pytest.importorskip("torch")
    avx2 = CompileTarget(mcpu="znver3", threads=2)
    assert avx2.vector_lanes == 8 and avx2.vector_registers == 16
    mod, inputs, expected = _conv_case()
    runner, picked = compile_and_explain(mod, avx2)
    assert "Fallback" not in picked.values()
    for got, want in zip(runner(*inputs), expected, strict=True):
        assert_close(got, want)


# ---------------------------------------------------------------------------------------------
# Hand-written kernels (``tirx.is_scheduled``) are neither fused nor rescheduled


def test_hand_scheduled_kernel_untouched(host_target):
    from sparseforge.codegen import build as cg, vm

    te = _tvm.te
    a = te.placeholder((8, 16), name="A")
    b = te.compute((8, 16), lambda i, j: a[i, j] * 2.0, name="B")
    kernel = te.create_prim_func([a, b]).with_attr({"tirx.is_scheduled": True, "global_symbol": "hand"})
    bb = relax.BlockBuilder()
    x = _var("x", (8, 16))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.add_func(kernel, "hand")
            y = bb.emit(relax.op.add(x, relax.const(np.ones((8, 16), "float32"))))
            z = bb.emit(relax.call_tir(gv, [y], relax.TensorType((8, 16), "float32")))
            out = bb.emit_output(relax.op.multiply(z, z))
        bb.emit_func_output(out)
    mod = bb.get()
    scheduled = cg.optimize(mod, host_target)
    _tvm.tvm.ir.assert_structural_equal(scheduled["hand"], kernel)
    calls = [str(b.value) for b in scheduled["main"].body.blocks[0].bindings]
    assert sum("hand" in c for c in calls) == 1
    xv = _rand(8, 16)
    got = vm.run(cg.compile_module(scheduled, host_target), [xv], threads=2)[0]
    assert_close(got, ((xv + 1) * 2) ** 2)


@pytest.mark.parametrize("blocked", [True, False])
def test_conv_padding_copied_only_for_blocked_inputs(host_target, blocked):
    """A blocked input is zero-padded once into a copy (bounds checks in every tap halved deep 3x3 layers);
    a plain NCHW input (the first layer) keeps the bounds check inlined into the taps."""
    from sparseforge.codegen.schedules.conv2d import Conv2dNCHWc
    from sparseforge.codegen.schedules.kernels_conv import conv2d_nchwc

    te = _tvm.te
    shape = (1, 2, 10, 10, 8) if blocked else (1, 3, 10, 10)
    x = te.placeholder(shape, name="x")
    w = te.placeholder((2, 16 if blocked else 3, 3, 3, 8), name="w")
    y = conv2d_nchwc(x, w, strides=(1, 1), pads=(1, 1, 1, 1), out_hw=(10, 10), lanes=8, tile_m=4, tile_blocks=2,
                     input_blocked=blocked)
    sch = Conv2dNCHWc().schedule(te.create_prim_func([x, w, y]), host_target.tvm_target())
    assert sch is not None
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    assert ("pad" in names) == blocked, names


@pytest.mark.parametrize(("n", "lanes", "registers", "nr"), [
    (50257, 8, 16, 24),   # GPT-2's LM head: 3 vectors although 1 pads less (7 columns against 23)
    (3072, 8, 16, 24),
    (1000, 8, 16, 24),
    (10, 8, 16, 16),      # one 2-vector panel rather than 24 columns of padding
    (4, 8, 16, 8),
    (50257, 16, 32, 48),
])
def test_dense_panel_width_weighs_padding_by_tile_rate(n, lanes, registers, nr):
    assert dense_tile_n(n, lanes, registers) == nr


@pytest.mark.parametrize(("ocb", "pixels", "lanes", "registers", "tile"), [
    (120, 49, 8, 16, (4, 3)),     # 7x7, 160 -> 960: 4 x 3 (3 pixels padded), not 2 x 3 (1 padded, half the FMAs)
    (80, 576, 8, 16, (6, 2)),     # no padding either way: the fullest tile
    (4, 12544, 8, 16, (6, 2)),    # 6 x 2 fills all 12 accumulators (2 pixels padded; 5 x 2 pads 1)
    (16, 784, 8, 16, (6, 2)),     # 1x1 stride 2, 64 -> 128 at 28x28: 6 x 2 0.226 ms, 5 x 2 0.244, 4 x 2 0.243
    (3, 25, 8, 16, (4, 3)),       # 5x5: 4 x 3 pads 3; 3 x 3 pads 2 with 3/4 of the accumulators
    (3, 3, 8, 16, (3, 3)),        # fewer pixels than a tile: one tile
    (120, 49, 16, 32, (7, 3)),    # AVX-512 (24 accumulators): 7 x 3 fills 21 with no padding
])
def test_conv_tile_fills_the_registers(ocb, pixels, lanes, registers, tile):
    assert conv_tile(ocb, pixels, lanes, registers) == tile


def test_conv_tile_on_a_plain_nchw_input_pads_least():
    assert conv_tile(8, 112 * 112, 8, 16, input_blocked=False) == (4, 2)  # 5 x 2 ran 1.5x slower on a 7x7 stem
    assert conv_tile(8, 112 * 112, 8, 16) == (6, 2)


@pytest.mark.parametrize(("m", "nr", "mr"), [
    (49, 24, 4),    # 49 rows (Winograd tiles of a 14x14 image, 49 tokens): 4 x 3 vectors, not 2 x 3
    (50, 24, 4),
    (128, 24, 4),
    (7, 24, 4),     # 2 tiles of 4 rows (1 padded), not 3 of 3 (2 padded)
    (14, 8, 7),     # one vector wide (depthwise rows): 7 + 7, not 8 + 8
    (1, 24, 1),
])
def test_dense_tile_rows_fill_the_registers(m, nr, mr):
    assert dense_tile_m(m, nr, 8, 16) == mr


# ---------------------------------------------------------------------------------------------
# Squeeze-and-excitation (EfficientNet / MobileNetV3): the channel scale stays blocked, and the
# conv that makes it runs once, not once per tile of the image it scales.


def _se_case():
    we, wd = _rand(40, 24, 1, 1, scale=0.3), _rand(40, 1, 3, 3, scale=0.3)
    ws1, bs1 = _rand(10, 40, 1, 1, scale=0.3), _rand(10)
    ws2, bs2 = _rand(40, 10, 1, 1, scale=0.3), _rand(40)
    wp = _rand(16, 40, 1, 1, scale=0.3)
    x = _rand(1, 24, 9, 11)

    def body(bb, xv):
        op, nn, c = relax.op, relax.op.nn, relax.const
        e = bb.emit(nn.silu(nn.conv2d(xv, c(we))))
        d = bb.emit(nn.silu(nn.conv2d(e, c(wd), padding=1, groups=40)))
        s = bb.emit(op.mean(d, axis=[2, 3], keepdims=True))
        s = bb.emit(nn.silu(op.add(nn.conv2d(s, c(ws1)), c(bs1.reshape(1, 10, 1, 1)))))
        s = bb.emit(op.sigmoid(op.add(nn.conv2d(s, c(ws2)), c(bs2.reshape(1, 40, 1, 1)))))
        return [bb.emit(nn.conv2d(op.multiply(d, s), c(wp)))]

    t = __import__("torch")
    f = t.nn.functional
    x64 = t.from_numpy(x.astype(np.float64))
    d = f.silu(f.conv2d(f.silu(f.conv2d(x64, t.from_numpy(we.astype(np.float64)))),
                        t.from_numpy(wd.astype(np.float64)), padding=1, groups=40))
    s = f.silu(f.conv2d(d.mean((2, 3), keepdim=True), t.from_numpy(ws1.astype(np.float64)),
                        t.from_numpy(bs1.astype(np.float64))))
    s = t.sigmoid(f.conv2d(s, t.from_numpy(ws2.astype(np.float64)), t.from_numpy(bs2.astype(np.float64))))
    y = f.conv2d(d * s, t.from_numpy(wp.astype(np.float64))).numpy()
    return _build([_var("x", x.shape)], body), [x], [y]


def test_squeeze_excitation_stays_blocked(host_target):
    pytest.importorskip("torch")
    mod, inputs, expected = _se_case()
    runner, picked = compile_and_explain(mod, host_target)
    assert_close(runner(*inputs)[0], expected[0])
    # one transform into NCHWc at the input, one out at the output: none around the channel scale
    assert len(_rules_of(picked, "layout_transform")) == 2, picked
    assert len(_rules_of(picked, "sf_conv2d_nchwc")) == 4 and "Fallback" not in picked.values(), picked


def test_conv_with_broadcast_epilogue_computes_its_accumulators_once(host_target):
    """``sigmoid(conv(s)) * x`` with ``s`` of one pixel and ``x`` of 6x5: the accumulators are not recomputed per
    tile of the 6x5 output (they are not under the output's loops)."""
    from sparseforge.codegen.schedules.conv2d import Conv2dNCHWc
    from sparseforge.codegen.schedules.kernels_conv import conv2d_nchwc

    te = _tvm.te
    s = te.placeholder((1, 2, 1, 1, 8), name="s")
    w = te.placeholder((2, 16, 1, 1, 8), name="w")
    x = te.placeholder((1, 2, 6, 5, 8), name="x")
    y = conv2d_nchwc(s, w, strides=(1, 1), pads=(0, 0, 0, 0), out_hw=(1, 1), lanes=8, tile_m=1, tile_blocks=2,
                     input_blocked=True)
    out = te.compute(x.shape, lambda n, c, h, ww, v: x[n, c, h, ww, v] * te.sigmoid(y[n, c, 0, 0, v]), name="out")
    func = te.create_prim_func([s, w, x, out])
    sch = Conv2dNCHWc().schedule(func, host_target.tvm_target())
    assert sch is not None
    acc_loop = sch.get_loops(sch.get_sblock("conv2d_nchwc_acc_update"))[0]
    out_loop = sch.get_loops(sch.get_sblock("out"))[0]
    assert not sch.get_sref(acc_loop).same_as(sch.get_sref(out_loop))
    built = _tvm.tvm.compile(sch.mod, target=host_target.tvm_target())
    dev = _tvm.tvm.cpu()
    sv, wv, xv = _rand(1, 2, 1, 1, 8), _rand(2, 16, 1, 1, 8), _rand(1, 2, 6, 5, 8)
    got = _tvm.tvm.runtime.tensor(np.zeros(xv.shape, "float32"), dev)
    built(*(_tvm.tvm.runtime.tensor(a, dev) for a in (sv, wv, xv)), got)
    ch = sv.reshape(16)
    acc = np.einsum("i,oiv->ov", ch.astype(np.float64), wv[:, :, 0, 0, :])  # [2 blocks, 8 lanes]
    want = xv * (1 / (1 + np.exp(-acc)))[None, :, None, None, :]
    assert_close(got.numpy(), want)


# ---------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3): 3x3 stride-1 convolutions, chained (the output transform must not fuse into the next
# input transform), with bias + ReLU and residual epilogues, odd image sizes and an output channel count (44) that
# is not a multiple of the vector width.


def _winograd_case():
    w1, b1 = _rand(64, 64, 3, 3, scale=0.05), _rand(64)
    w2 = _rand(64, 64, 3, 3, scale=0.05)
    w3 = _rand(44, 64, 3, 3, scale=0.05)
    x = _rand(1, 64, 9, 11)

    def body(bb, xv):
        op, nn, c = relax.op, relax.op.nn, relax.const
        c1 = bb.emit(nn.relu(op.add(nn.conv2d(xv, c(w1), padding=1), c(b1.reshape(1, 64, 1, 1)))))
        c2 = bb.emit(op.add(nn.conv2d(c1, c(w2), padding=1), c1))
        return [c2, bb.emit(nn.conv2d(c2, c(w3), padding=1))]

    t = __import__("torch")

    def conv(a, w):
        return t.nn.functional.conv2d(a, t.from_numpy(w.astype(np.float64)), padding=1)

    r1 = t.relu(conv(t.from_numpy(x.astype(np.float64)), w1) + t.from_numpy(b1.astype(np.float64)).reshape(1, 64, 1, 1))
    r2 = conv(r1, w2) + r1
    return _build([_var("x", x.shape)], body), [x], [r2.numpy(), conv(r2, w3).numpy()]


def test_winograd_numerics_and_fusion(host_target):
    pytest.importorskip("torch")
    mod, inputs, expected = _winograd_case()
    runner, picked = compile_and_explain(mod, host_target)
    for got, want in zip(runner(*inputs), expected, strict=True):
        assert got.shape == want.shape
        assert_close(got, want, rtol=1e-5)
    assert len(_rules_of(picked, "winograd_input")) == 3, picked
    assert set(_rules_of(picked, "winograd_input").values()) == {"WinogradInput"}, picked
    assert set(_rules_of(picked, "winograd_output").values()) == {"WinogradOutput"}, picked
    assert set(_rules_of(picked, "winograd_gemm").values()) == {"Dense"}, picked
    assert not any("winograd_output" in name and "winograd_input" in name for name in picked), picked
    assert not _rules_of(picked, "conv2d_nchwc"), picked


@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "pads", "groups", "expected"), [
    ((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), 1, True),
    ((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), (1, 1, 1, 1), 1, True),
    ((1, 64, 56, 56), (128, 64, 3, 3), (2, 2), (1, 1, 1, 1), 1, False),   # strided
    ((1, 64, 56, 56), (64, 64, 1, 1), (1, 1), (0, 0, 0, 0), 1, False),    # 1x1
    ((1, 64, 56, 56), (64, 32, 3, 3), (1, 1), (1, 1, 1, 1), 2, False),    # grouped
    ((1, 3, 224, 224), (64, 3, 3, 3), (1, 1), (1, 1, 1, 1), 1, False),    # channels not a whole vector
    ((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (0, 0, 0, 0), 1, False),    # "valid" padding
    ((1, 64, 6, 6), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), 1, False),      # 9 tiles
    ((1, 32, 112, 112), (32, 32, 3, 3), (1, 1), (1, 1, 1, 1), 1, False),  # too few channels for the transforms
    ((1, 48, 56, 56), (48, 48, 3, 3), (1, 1), (1, 1, 1, 1), 1, True),
])
def test_winograd_eligibility(x_shape, w_shape, strides, pads, groups, expected):
    assert winograd.eligible(x_shape, w_shape, strides, pads, groups, 8) is expected


def test_winograd_weight_transform_matches_the_algorithm():
    """A NumPy reference of F(2x2, 3x3) built from the packed U: one 4x4 tile equals the direct 2x2 output."""
    w, d = _rand(5, 3, 3, 3), _rand(3, 4, 4)
    u = winograd.winograd_weight(w, 8)  # [16, 1, 3, 8]
    assert u.shape == (16, 1, 3, 8) and not u[:, :, :, 5:].any()
    v = np.einsum("ai,cij,bj->abc", winograd.BT, d.astype(np.float64), winograd.BT).reshape(16, 3)
    m = np.einsum("ec,eco->eo", v, u[:, 0, :, :5].astype(np.float64)).reshape(4, 4, 5)
    y = np.einsum("ra,abo,sb->ors", winograd.AT, m, winograd.AT)
    direct = np.array([[[np.sum(w[o] * d[:, r:r + 3, s:s + 3]) for s in range(2)] for r in range(2)]
                       for o in range(5)])
    np.testing.assert_allclose(y, direct, rtol=1e-5, atol=1e-5)
