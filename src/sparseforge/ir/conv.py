"""Geometry of a 2-D convolution (NCHW), as the sparse k x k convolution ops, kernels and cost model share it.

A :class:`ConvSpec` is everything but the weight values: input shape, output channels, kernel, strides, pads
(top, left, bottom, right), dilations and groups. The weight, in the ``(output, reduction)`` view, is
``[Cout, Cin/group * kh * kw]`` with the reduction axis ordered ``(ci, kh, kw)`` (ONNX's own weight layout,
flattened). :meth:`ConvSpec.key` writes the geometry as one string (the cost model's "kind" of a conv layer) and
:meth:`ConvSpec.parse` reads it back.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx_ir as ir

KEY_PREFIX = "conv2d:"
_KEY = re.compile(r"conv2d:(\d+)x(\d+)x(\d+)x(\d+):o(\d+):k(\d+)x(\d+):s(\d+)x(\d+):p(\d+)x(\d+)x(\d+)x(\d+)"
                  r":d(\d+)x(\d+):g(\d+)$")


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A 2-D convolution: ``x_shape`` (B, Cin, H, W), ``cout``, ``kernel`` (kh, kw), ``strides``, ``pads``
    (top, left, bottom, right), ``dilations``, ``group``."""

    x_shape: tuple[int, int, int, int]
    cout: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    group: int = 1

    def __post_init__(self):
        b, cin, h, w = self.x_shape
        if cin % self.group or self.cout % self.group:
            raise ValueError(f"conv: {self.group} groups do not divide Cin {cin} and Cout {self.cout}")
        if min(self.kernel) < 1 or min(self.strides) < 1 or min(self.dilations) < 1 or min(self.pads) < 0:
            raise ValueError(f"conv: invalid geometry {self}")
        if min(self.out_hw) < 1:
            raise ValueError(f"conv: kernel {self.kernel} does not fit the padded {h}x{w} input")

    @property
    def out_hw(self) -> tuple[int, int]:
        _, _, h, w = self.x_shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        pt, pl, pb, pr = self.pads
        return (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.x_shape[0], self.cout, *self.out_hw)

    @property
    def cin_per_group(self) -> int:
        return self.x_shape[1] // self.group

    @property
    def reduction(self) -> int:
        """K of the ``[Cout, K]`` weight view: Cin/group * kh * kw."""
        return self.cin_per_group * self.kernel[0] * self.kernel[1]

    @property
    def m(self) -> int:
        """Output positions: B * OH * OW."""
        b = self.x_shape[0]
        oh, ow = self.out_hw
        return b * oh * ow

    @property
    def is_pointwise(self) -> bool:
        """1x1, stride 1, no padding, one group: the plain 1x1 convolution (a product)."""
        return (self.kernel == (1, 1) and self.strides == (1, 1) and not any(self.pads) and self.group == 1)

    def key(self) -> str:
        """The geometry as one string (``conv2d:BxCxHxW:oN:kHxW:sHxW:pTxLxBxR:dHxW:gG``)."""
        j = lambda t: "x".join(str(int(v)) for v in t)  # noqa: E731
        return (f"{KEY_PREFIX}{j(self.x_shape)}:o{self.cout}:k{j(self.kernel)}:s{j(self.strides)}:p{j(self.pads)}"
                f":d{j(self.dilations)}:g{self.group}")

    @classmethod
    def parse(cls, key: str) -> ConvSpec:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"not a conv2d key: {key!r}")
        v = [int(g) for g in match.groups()]
        return cls(tuple(v[0:4]), v[4], tuple(v[5:7]), tuple(v[7:9]), tuple(v[9:13]), tuple(v[13:15]), v[15])

    def attributes(self) -> list[ir.Attr]:
        """The ONNX Conv attributes of this geometry (explicit pads)."""
        return [ir.AttrInt64s("kernel_shape", list(self.kernel)), ir.AttrInt64s("strides", list(self.strides)),
                ir.AttrInt64s("pads", [self.pads[0], self.pads[1], self.pads[2], self.pads[3]]),
                ir.AttrInt64s("dilations", list(self.dilations)), ir.AttrInt64("group", self.group)]


def is_conv_key(kind: str) -> bool:
    return kind.startswith(KEY_PREFIX)


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attr = node.attributes.get(name)
    return [int(v) for v in attr.value] if attr is not None else list(default)


def spec_of(node: ir.Node, x_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> ConvSpec:
    """The geometry of a 2-D ``Conv`` node (or an op carrying Conv attributes) on an input of ``x_shape``.

    ``auto_pad`` SAME_UPPER / SAME_LOWER is resolved into explicit pads (ONNX's rule). Raises ValueError for
    anything that is not a 2-D convolution with a static input."""
    if len(x_shape) != 4 or len(weight_shape) != 4:
        raise ValueError(f"Conv with {len(weight_shape) - 2} spatial dims (sparse conv kernels are 2-D)")
    kernel = tuple(int(k) for k in weight_shape[2:])
    strides = tuple(_ints(node, "strides", [1, 1]))
    dilations = tuple(_ints(node, "dilations", [1, 1]))
    pads = _ints(node, "pads", [0, 0, 0, 0])
    auto_pad = node.attributes.get("auto_pad")
    auto = auto_pad.value if auto_pad is not None else "NOTSET"
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for axis in range(2):
            size, s, d, k = x_shape[2 + axis], strides[axis], dilations[axis], kernel[axis]
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            pads[axis], pads[axis + 2] = (small, large) if auto == "SAME_UPPER" else (large, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto != "NOTSET":
        raise ValueError(f"Conv auto_pad={auto}")
    group = int(node.attributes["group"].value) if "group" in node.attributes else 1
    return ConvSpec(tuple(int(d) for d in x_shape), int(weight_shape[0]), kernel, strides, tuple(pads), dilations,
                    group)


def reference(spec: ConvSpec, weight: np.ndarray, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """NumPy reference: ``weight`` ``[Cout, K]`` (or ``[Cout, Cin/g, kh, kw]``), ``x`` of ``spec.x_shape``,
    float64 accumulation, result in ``x``'s dtype."""
    b, cin, h, w = spec.x_shape
    kh, kw = spec.kernel
    (sh, sw), (dh, dw), g = spec.strides, spec.dilations, spec.group
    pt, pl, pb, pr = spec.pads
    oh, ow = spec.out_hw
    w4 = np.asarray(weight, np.float64).reshape(spec.cout, spec.cin_per_group, kh, kw)
    xp = np.zeros((b, cin, h + pt + pb, w + pl + pr), np.float64)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    y = np.zeros((b, spec.cout, oh, ow), np.float64)
    cog, cig = spec.cout // g, spec.cin_per_group
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
            for gi in range(g):
                y[:, gi * cog:(gi + 1) * cog] += np.einsum(
                    "oc,bchw->bohw", w4[gi * cog:(gi + 1) * cog, :, i, j], patch[:, gi * cig:(gi + 1) * cig])
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape(1, -1, 1, 1)
    return y.astype(x.dtype)
