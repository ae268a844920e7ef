"""``Resize`` (opset 11+) with constant ``roi`` / ``scales`` / ``sizes``: every mode, as ``onnx.reference`` computes it.

Resize is separable: each resized axis is a 1-D interpolation whose source indices and weights depend only on
static shapes and the constant parameters. They are computed at compile time by the ONNX reference's own 1-D routine
(coordinate transformation, nearest rounding, linear/cubic coefficients, antialias, ``exclude_outside``, edge
clamping, ``tf_crop_and_resize`` extrapolation), applied to an identity matrix, so the result is the reference's
interpolation matrix ``M`` (output x input) of that axis. The graph then computes, per axis,
``y[..., o, ...] = sum_k w[o, k] * x[..., idx[o, k], ...]`` over the few nonzero entries of row ``o`` of ``M``
(``take`` only for nearest, which is exact), in float32 (float64 for float64 inputs), and extrapolated positions
are set to ``extrapolation_value``. Integer outputs are rounded and saturated as the reference does.
``keep_aspect_ratio_policy`` and ``axes`` follow the reference. TVM's converter downsampled wrongly.
"""

from __future__ import annotations

import numpy as np

from sparseforge.errors import UnsupportedOpError

from ._util import attr_str, const, constant_value, dtype, op, padded, shape

try:  # the reference's vectorized 1-D routine and coefficient functions (onnx >= 1.19)
    from onnx.reference.ops import op_resize as _reference
    _ALONG_AXIS = _reference._interpolate_1d_along_axis
except (ImportError, AttributeError):  # pragma: no cover - depends on the installed onnx
    _reference, _ALONG_AXIS = None, None


def _coefficients(mode: str, attrs):
    antialias = bool(int(attrs.get("antialias", 0)))
    if mode == "nearest":
        nearest = attr_str(attrs, "nearest_mode", "round_prefer_floor")
        return lambda ratio, scale: _reference._nearest_coeffs(ratio, mode=nearest)
    if mode == "cubic":
        a = float(attrs.get("cubic_coeff_a", -0.75))
        fn = _reference._cubic_coeffs_antialias if antialias else _reference._cubic_coeffs
        return lambda ratio, scale: fn(ratio, scale, A=a)
    if mode == "linear":
        return _reference._linear_coeffs_antialias if antialias else _reference._linear_coeffs
    raise UnsupportedOpError(f"Resize mode '{mode}' is not an ONNX mode")


def _plan(in_shape, scales, sizes, axes, roi, policy: str):
    """Per axis ``(scale, output length, roi pair or None)``, as ``onnx.reference``'s ``_interpolate_nd``."""
    r = len(in_shape)
    axes = list(range(r)) if axes is None else [int(a) % r for a in axes]
    full_roi = None
    if roi is not None and roi.size:
        full_roi = [0.0] * r + [1.0] * r
        for i, d in enumerate(axes):
            full_roi[d], full_roi[r + d] = float(roi[i]), float(roi[len(axes) + i])
    if sizes is not None:
        out = list(in_shape)
        for i, d in enumerate(axes):
            out[d] = int(sizes[i])
        factors = [out[i] / in_shape[i] for i in range(r)]
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            scale = pick(factors[d] for d in axes)
            factors = [scale if i in axes else 1.0 for i in range(r)]
            out = [int(scale * in_shape[i] + 0.5) if i in axes else in_shape[i] for i in range(r)]
    else:
        factors = [1.0] * r
        for i, d in enumerate(axes):
            factors[d] = float(scales[i])
        out = [int(v) for v in (np.array(factors) * np.array(in_shape)).astype(int)]
    plan = {}
    for d in axes:
        pair = None if full_roi is None else (full_roi[d], full_roi[d + r])
        identity = np.isclose(factors[d], 1.0) and out[d] == in_shape[d] and (
            pair is None or (np.isclose(pair[0], 0.0) and np.isclose(pair[1], 1.0)))
        if not identity:
            plan[d] = (float(factors[d]), int(out[d]), pair)
    return plan, out


def _axis_matrix(n_in: int, scale: float, n_out: int, pair, fct, coord_mode: str, exclude: bool):
    """The reference's interpolation matrix (n_out x n_in) of one axis, and its extrapolated rows."""
    def probe(extrapolation):
        return _ALONG_AXIS(np.eye(n_in), 0, scale, n_out, fct, roi=None if pair is None else list(pair),
                           extrapolation_value=extrapolation, coordinate_transformation_mode=coord_mode,
                           exclude_outside=exclude)
    zero, one = probe(0.0), probe(1.0)
    extrapolated = np.any(zero != one, axis=1) if coord_mode == "tf_crop_and_resize" else np.zeros(n_out, bool)
    return zero, extrapolated


def _gather_weights(matrix: np.ndarray):
    """Row-wise nonzero entries of ``matrix`` as ``(idx, w)`` of shape (rows, k); short rows padded with
    weight-0 copies of their first index."""
    support = [np.flatnonzero(row) for row in matrix]
    k = max(1, max(len(s) for s in support))
    idx = np.zeros((matrix.shape[0], k), np.int64)
    w = np.zeros((matrix.shape[0], k), np.float64)
    for o, cols in enumerate(support):
        if len(cols):
            idx[o, :len(cols)], w[o, :len(cols)] = cols, matrix[o, cols]
            idx[o, len(cols):] = cols[0]
    return idx, w


def convert(bb, inputs, attrs):
    if _ALONG_AXIS is None:  # pragma: no cover
        raise UnsupportedOpError("Resize needs onnx >= 1.19 (its reference's separable routine)")
    if int(attrs.get("tvm_custom", {}).get("opset", 11)) < 11:
        raise UnsupportedOpError("Resize before opset 11 (inputs X, scales) is not supported; convert the model "
                                 "to opset 11 or later (onnx.version_converter)")
    x, roi, scales, sizes = padded(inputs, 4)
    given = [constant_value(v) if v is not None else None for v in (roi, scales, sizes)]
    roi_v, scales_v, sizes_v = (None if v is None or v.size == 0 else v.reshape(-1) for v in given)
    if scales_v is None and sizes_v is None:
        raise UnsupportedOpError("Resize needs constant scales or sizes")
    in_shape = shape(x)
    mode = attr_str(attrs, "mode", "nearest")
    coord_mode = attr_str(attrs, "coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and int(attrs.get("antialias", 0)):
        raise UnsupportedOpError("Resize: antialias is not defined for mode 'nearest'")
    axes = attrs.get("axes")
    plan, out_shape = _plan(in_shape, scales_v, sizes_v, axes, roi_v,
                            attr_str(attrs, "keep_aspect_ratio_policy", "stretch"))
    fct = _coefficients(mode, attrs)
    t = dtype(x)
    work = "float64" if t == "float64" else "float32"
    y = x if t == work else bb.emit(op.astype(x, work))
    extrapolated_axes = []
    for d, (scale, n_out, pair) in plan.items():
        matrix, extrapolated = _axis_matrix(in_shape[d], scale, n_out, pair, fct, coord_mode,
                                            bool(int(attrs.get("exclude_outside", 0))))
        idx, w = _gather_weights(matrix)
        if mode == "nearest":
            y = bb.emit(op.take(y, const(idx[:, 0], "int64"), axis=d))
        else:
            cur = shape(y)
            gathered = bb.emit(op.take(y, const(idx.reshape(-1), "int64"), axis=d))
            gathered = bb.emit(op.reshape(gathered, cur[:d] + idx.shape + cur[d + 1:]))
            weights = const(w.reshape(idx.shape + (1,) * (len(cur) - d - 1)), work)
            y = bb.emit(op.sum(op.multiply(gathered, weights), axis=[d + 1]))
        if extrapolated.any():
            extrapolated_axes.append((d, extrapolated))
    if extrapolated_axes:
        mask = np.zeros(out_shape, bool)
        for d, rows in extrapolated_axes:
            mask |= rows.reshape([-1 if i == d else 1 for i in range(len(out_shape))])
        value = float(attrs.get("extrapolation_value", 0.0))
        y = bb.emit(op.where(const(mask, "bool"), const(value, work), y))
    if t.startswith(("int", "uint")):
        info = np.iinfo(t)
        y = bb.emit(op.minimum(op.maximum(op.round(y), const(info.min, work)), const(info.max, work)))
    return bb.emit(op.astype(y, t)) if t != work else y


CONVERTERS = {"Resize": convert}
