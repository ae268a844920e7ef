"""The explicit spectral convolution ``irfft(rfft(x, n) * K, n)[window]`` (Hyena/H3-style ``fftconv`` as
``torch.onnx.export`` writes it: ``DFT`` forward one-sided, an elementwise complex product with a constant spectrum,
``DFT`` inverse one-sided) becomes one ``ai.sparseforge.FftConv``.

Matching (:func:`match`), from each inverse one-sided ``DFT``:

* between the two DFTs only elementwise ops on the complex axis (Slice/Concat on the last axis, Mul/Div/Add/Sub/Neg
  with constants) whose values are read inside the region: a linear map of the spectrum. It is evaluated with NumPy
  on the spectra ``0``, ``1`` and ``i``: it must give ``0``, ``K`` and ``i K`` (a complex product by ``K``, constant
  over the batch);
* before the forward DFT: ``Unsqueeze`` of the signal ``x [B, C, T]`` (possibly zero-padded on the time axis) with
  the transform on the time axis, ``n >= T`` (no truncation);
* after the inverse: Mul/Div by a scalar, Squeeze/Reshape, Slice on the time axis giving ``y [B, C, T_out]``; which
  samples are kept is found by pushing time labels through these ops.

Exactness: the kept window of a circular convolution is a linear convolution of ``x`` with ``g[d] = h[d mod n]``
over the lags the window needs (``h = scale * irfft(K)`` per channel, float64). The lags at both ends of ``g`` are
dropped while their L2 norm stays within ``2 eps log2(n) |g|``, inside FftConv's own rounding bound, so the
rewritten model computes the same function within the stated FFT tolerance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from sparseforge.ir import ops
from sparseforge.ir.forms import fft_conv
from sparseforge.ir.keys import DOMAIN
from sparseforge.ir.weights import constant_array
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.labels import move

#: Ops allowed between the two DFTs (elementwise on the complex axis).
REGION_OPS = frozenset({"Slice", "Concat", "Mul", "Div", "Add", "Sub", "Neg", "Identity"})
#: Ops allowed after the inverse DFT.
TAIL_OPS = frozenset({"Mul", "Div", "Squeeze", "Reshape", "Slice", "Identity"})


class NoMatch(Exception):
    pass


@dataclasses.dataclass
class Spectral:
    signal: ir.Value  # x [B, C, T]
    output: ir.Value  # y [B, C, T_out]
    weight: np.ndarray  # [C, 1, L] correlation kernel
    pads: tuple[int, int]
    taps: int


def _attr(node: ir.Node, key: str, default):
    attr = node.attributes.get(key)
    return default if attr is None else attr.value


def _shape(value: ir.Value) -> tuple[int, ...]:
    if value.shape is None or not value.shape.is_static():
        raise NoMatch(f"'{value.name}' has no static shape")
    return tuple(int(d) for d in value.shape)


def _dft_params(node: ir.Node, opset: int) -> tuple[int, int]:
    """``(n, axis)`` of a DFT node with constant parameters."""
    n = constant_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if n is None:
        raise NoMatch(f"DFT '{node.name}' has no constant dft_length")
    if opset >= 20:
        axis_in = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        axis = -2 if axis_in is None else int(np.asarray(axis_in).reshape(-1)[0])
    else:
        axis = int(_attr(node, "axis", 1))
    return int(np.asarray(n).reshape(-1)[0]), axis % len(_shape(node.inputs[0]))


def _evaluate(nodes: list[ir.Node], start: ir.Value, probe: np.ndarray) -> dict[ir.Value, np.ndarray]:
    """The region's values for ``start = probe`` (float64)."""
    values = {start: probe}

    def get(v):
        if v in values:
            return values[v]
        c = constant_array(v)
        if c is None:
            raise NoMatch(f"'{v.name}' enters the spectral product from outside")
        return c.astype(np.float64)

    for node in nodes:
        op, inputs = node.op_type, node.inputs
        if op == "Slice":
            starts, ends = (constant_array(v) for v in inputs[1:3])
            axes = constant_array(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
            steps = constant_array(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
            x = get(inputs[0])
            if starts is None or ends is None or (steps is not None and np.any(steps != 1)):
                raise NoMatch(f"Slice '{node.name}' is not a constant unit-step slice")
            axes = np.arange(len(starts)) if axes is None else axes
            if any(int(a) % x.ndim != x.ndim - 1 for a in axes):
                raise NoMatch(f"Slice '{node.name}' slices a non-complex axis")
            index = [slice(None)] * x.ndim
            for s, e, a in zip(starts, ends, axes):
                index[int(a) % x.ndim] = slice(int(s), int(e))
            out = x[tuple(index)]
        elif op == "Concat":
            parts = [get(v) for v in inputs]
            axis = int(_attr(node, "axis", 0)) % parts[0].ndim
            if axis != parts[0].ndim - 1:
                raise NoMatch(f"Concat '{node.name}' joins a non-complex axis")
            out = np.concatenate(parts, axis=axis)
        elif op in ("Mul", "Div", "Add", "Sub"):
            a, b = get(inputs[0]), get(inputs[1])
            out = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract}[op](a, b)
        elif op == "Neg":
            out = -get(inputs[0])
        else:
            out = get(inputs[0])
        values[node.outputs[0]] = out
    return values


def _region(inverse: ir.Node) -> tuple[ir.Node, list[ir.Node]]:
    """The forward DFT and the nodes between it and ``inverse`` (topological order)."""
    nodes: dict[int, ir.Node] = {}
    forward = None
    stack = [inverse.inputs[0]]
    while stack:
        value = stack.pop()
        producer = value.producer()
        if producer is None or constant_array(value) is not None:
            continue
        if producer.op_type == "DFT":
            if forward is not None and forward is not producer:
                raise NoMatch("two forward DFTs reach the product")
            forward = producer
            continue
        if producer.op_type not in REGION_OPS:
            raise NoMatch(f"{producer.op_type} '{producer.name}' between the DFTs is not an elementwise complex op")
        if id(producer) not in nodes:
            nodes[id(producer)] = producer
            stack.extend(v for v in producer.inputs if v is not None)
        if len(nodes) > 64:
            raise NoMatch("too many ops between the DFTs")
    if forward is None:
        raise NoMatch("no forward DFT before the inverse one")
    order = {id(n): i for i, n in enumerate(inverse.graph)} if inverse.graph is not None else {}
    region = sorted(nodes.values(), key=lambda n: order.get(id(n), 0))
    members = {id(n) for n in region} | {id(inverse)}
    for node in [forward, *region]:
        for out in node.outputs:
            if out.is_graph_output() or any(id(u) not in members for u, _ in out.uses()):
                raise NoMatch(f"'{out.name}' is used outside the spectral product")
    return forward, region


def _tail(inverse: ir.Node) -> tuple[ir.Value, list[ir.Node], float]:
    """The output after the inverse DFT's chain, the chain, and the scalar scale it applies."""
    current, chain, scale = inverse.outputs[0], [], 1.0
    while True:
        users = list(current.uses())
        if current.is_graph_output() or len(users) != 1:
            return current, chain, scale
        user, index = users[0]
        if user.op_type not in TAIL_OPS or index != 0:
            return current, chain, scale
        if user.op_type in ("Mul", "Div"):
            c = constant_array(user.inputs[1])
            if c is None or c.size != 1:
                return current, chain, scale
            scale = scale * float(c.reshape(-1)[0]) if user.op_type == "Mul" else scale / float(c.reshape(-1)[0])
        chain.append(user)
        current = user.outputs[0]


def _labels_through(chain: list[ir.Node], labels: np.ndarray) -> np.ndarray:
    for node in chain:
        out = node.outputs[0]
        try:
            labels = move(node, labels, out, _shape(out))
        except ValueError as exc:
            raise NoMatch(str(exc)) from None
        if labels.shape != _shape(out):
            raise NoMatch(f"'{out.name}': shape does not follow")
    return labels


def match(inverse: ir.Node, opset: int) -> Spectral:
    """The spectral convolution ending at ``inverse`` (an inverse one-sided DFT), or :class:`NoMatch`."""
    if not int(_attr(inverse, "inverse", 0)) or not int(_attr(inverse, "onesided", 0)):
        raise NoMatch("not an inverse one-sided DFT")
    n, axis = _dft_params(inverse, opset)
    forward, region = _region(inverse)
    if int(_attr(forward, "inverse", 0)) or not int(_attr(forward, "onesided", 0)) or _dft_params(forward, opset) != (n, axis):
        raise NoMatch("the forward DFT is not one-sided over the same length and axis")
    spectrum = forward.outputs[0]
    z_shape = _shape(spectrum)
    if len(z_shape) != 4 or axis != 2 or z_shape[3] != 2:
        raise NoMatch("the transform is not over the time axis of [B, C, T] signals")
    out_value = inverse.inputs[0]

    def probe(re, im):
        z = np.zeros(z_shape)
        z[..., 0], z[..., 1] = re, im
        return np.broadcast_to(_evaluate(region, spectrum, z)[out_value], z_shape)

    if np.any(probe(0.0, 0.0)):
        raise NoMatch("the product adds a constant (not linear in the spectrum)")
    one, imag = probe(1.0, 0.0), probe(0.0, 1.0)
    k = one[..., 0] + 1j * one[..., 1]
    if not (np.array_equal(imag[..., 0], -one[..., 1]) and np.array_equal(imag[..., 1], one[..., 0])):
        raise NoMatch("the product is not a complex multiplication by a constant spectrum")
    if not np.all(k == k[:1]):
        raise NoMatch("the spectrum differs across the batch")
    k = k[0]  # [C, F]
    # the signal: Unsqueeze(x [B, C, T]) (x possibly zero-padded on the time axis)
    unsq = forward.inputs[0].producer()
    if unsq is None or unsq.op_type != "Unsqueeze" or len(forward.inputs[0].uses()) != 1:
        raise NoMatch("the forward DFT does not read an unsqueezed real signal")
    signal, left = unsq.inputs[0], 0
    pad = signal.producer()
    if pad is not None and pad.op_type == "Pad" and len(signal.uses()) == 1:
        amounts = constant_array(pad.inputs[1]) if len(pad.inputs) > 1 else None
        value = pad.inputs[2] if len(pad.inputs) > 2 else None
        zero = value is None or (constant_array(value) is not None and not np.any(constant_array(value)))
        if amounts is not None and zero and str(_attr(pad, "mode", "constant")) == "constant" and \
                (len(pad.inputs) < 4 or pad.inputs[3] is None) and len(amounts) == 6 and \
                not np.any(amounts[[0, 1, 3, 4]]) and np.all(amounts >= 0):
            signal, left = pad.inputs[0], int(amounts[2])
    x_shape = _shape(signal)
    if len(x_shape) != 3 or x_shape[:2] != z_shape[:2]:
        raise NoMatch("the signal is not [B, C, T]")
    length = x_shape[2]
    if _shape(forward.inputs[0])[2] > n:
        raise NoMatch("the DFT truncates the signal")
    output, tail, scale = _tail(inverse)
    y_shape = _shape(output)
    time = np.broadcast_to(np.arange(n).reshape(1, 1, n, 1), _shape(inverse.outputs[0]))
    kept = _labels_through(tail, time)
    if len(y_shape) != 3 or y_shape[:2] != x_shape[:2] or not np.all(kept == kept[:1, :1, :]):
        raise NoMatch("the inverse DFT's output does not reach a [B, C, T_out] window")
    window = kept[0, 0]
    t0, t_out = int(window[0]), window.size
    if not np.array_equal(window, t0 + np.arange(t_out)):
        raise NoMatch("the kept samples are not one contiguous window")
    # circular convolution of the signal at offset `left` with h, restricted to the window: lags d of g
    h = np.fft.irfft(k, n, axis=-1) * scale  # [C, n]: the 1/n of the inverse is irfft's own
    d_min, d_max = t0 - (left + length - 1), t0 + t_out - 1 - left
    lags = np.arange(d_min, d_max + 1)
    g = h[:, lags % n]  # [C, lags]
    norm = float(np.linalg.norm(g))
    budget = 2 * float(np.finfo(np.float32).eps) * np.log2(n) * norm
    energy = (g ** 2).sum(axis=0)
    lo, hi, dropped = 0, g.shape[1], 0.0
    while lo < hi - 1 and dropped + energy[lo] <= budget ** 2:
        dropped += energy[lo]
        lo += 1
    while hi - 1 > lo and dropped + energy[hi - 1] <= budget ** 2:
        dropped += energy[hi - 1]
        hi -= 1
    g = g[:, lo:hi]
    d0, d1 = int(lags[lo]), int(lags[hi - 1])
    taps = d1 - d0 + 1
    # y[m] = sum_d x_shift[m - d] g[d]; as a correlation: W[i] = g[d1 - i], p0 = d1 - t0 + left
    p0 = d1 - t0 + left
    p1 = t_out - length - p0 + taps - 1
    if p0 < 0 or p1 < 0:
        raise NoMatch("the kept window needs negative padding")
    weight = np.ascontiguousarray(g[:, ::-1][:, None, :], dtype=np.float32)
    return Spectral(signal, output, weight, (p0, p1), taps)


def rewrite(model: ir.Model, found: Spectral, name: str) -> None:
    """Replace the matched subgraph with one ``FftConv`` producing ``found.output``."""
    channels = found.weight.shape[0]
    w = new_initializer(model, f"{name}.fft_weight", found.weight)
    bias = new_initializer(model, f"{name}.fft_bias", np.zeros(channels, np.float32))
    plan = new_initializer(model, f"{name}.fft_plan", fft_conv.plan(_shape(found.signal)[2], found.taps, found.pads))
    node = ir.Node(DOMAIN, fft_conv.OP_TYPE, [found.signal, w, bias, plan], name=name)
    old = found.output
    producer = old.producer()
    model.graph.insert_after(producer, node)
    name_, shape, type_ = old.name, old.shape, old.type
    old.replace_all_uses_with(node.outputs[0], replace_graph_outputs=True)
    out = node.outputs[0]
    out.name, out.shape, out.type = name_, shape, type_
    ir.passes.common.RemoveUnusedNodesPass()(model)
    ops.ensure_functions(model)
