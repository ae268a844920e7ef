"""Fact ``long_conv``: a 1-D convolution with at least 64 taps (an FFT-convolution candidate).

No column of its own: the table marks such a layer's ``op`` cell with ``(long)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact

LONG_CONV_MIN_TAPS = 64


class LongConv(Fact):
    name = "long_conv"
    fields = ("long_conv",)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> bool:
        return view.op_type == "Conv" and len(view.kernel_shape) == 1 and view.kernel_shape[0] >= LONG_CONV_MIN_TAPS

    def op_note(self, fields: Mapping[str, Any]) -> str:
        return " (long)" if fields["long_conv"] else ""


FACT = LongConv()
