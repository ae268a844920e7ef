"""Dead attention heads are removed exactly through the attention pattern (PyTorch nn.MultiheadAttention and a
Hugging Face-style layer); heads with only zero Q or K weights are kept with a note."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

torch = pytest.importorskip("torch")

from sparseforge.ir.frontend import load  # noqa: E402
from sparseforge.passes.infra import Pipeline  # noqa: E402
from sparseforge.passes.pipelines import export  # noqa: E402
from sparseforge.runtime.compare import compare  # noqa: E402


class HFAttention(torch.nn.Module):
    """Separate q/k/v Linear layers, view to heads, transpose, scaled scores, mask, softmax, output Linear."""

    def __init__(self, dim: int = 64, heads: int = 4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (torch.nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, mask):
        b, s, _ = x.shape

        def split(t):
            return t.view(b, s, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / self.head_dim ** 0.5 + mask
        ctx = torch.softmax(scores, dim=-1) @ v
        return self.o(ctx.transpose(1, 2).reshape(b, s, -1)) + x


def _run(module, inputs):
    model = load(module.eval(), inputs)
    original = ir.to_proto(model)
    report = Pipeline(export())(model).report("ShrinkChannels")
    result = compare(original, model, rtol=1e-5, runs=2)
    assert result.ok, result.to_dict()
    params = sum(v.const_value.size for v in model.graph.initializers.values()
                 if v.const_value is not None and v.const_value.dtype.is_floating_point() and v.const_value.size > 1)
    return report, params


def _heads(report, code):
    return [(d.node, d.message) for d in report.diagnostics if d.code == code]


def test_hugging_face_style_dead_heads() -> None:
    torch.manual_seed(0)
    layer = HFAttention()
    with torch.no_grad():
        layer.v.weight[16:32] = 0  # head 1: zero value rows and bias
        layer.v.bias[16:32] = 0
        layer.o.weight[:, 48:64] = 0  # head 3: zero output columns
        layer.q.weight[0:16] = 0  # head 0: Q only (kept)
        layer.q.bias[0:16] = 0
    x, mask = torch.randn(1, 10, 64), torch.zeros(1, 1, 10, 10)
    mask[..., 7:] = -1e4
    report, params = _run(layer, (x, mask))
    removed = _heads(report, "heads")
    assert len(removed) == 1 and "removed 2 of 4 heads (1, 3)" in removed[0][1], report.diagnostics
    assert any("Q weights are zero" in m and "head 0" in m for _, m in _heads(report, "heads.kept"))
    assert params == 4 * 64 * 64 + 4 * 64 - 2 * (3 * 16 * 64 + 3 * 16 + 64 * 16)


def test_pytorch_multihead_attention_dead_heads() -> None:
    torch.manual_seed(1)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    with torch.no_grad():
        layer.self_attn.in_proj_weight[128 + 32:128 + 48] = 0  # fused in_proj: V rows of head 2
        layer.self_attn.in_proj_bias[128 + 32:128 + 48] = 0
    report, _ = _run(layer, (torch.randn(1, 12, 64),))
    removed = _heads(report, "heads")
    assert len(removed) == 1 and "removed 1 of 4 heads (2)" in removed[0][1], report.diagnostics


def test_a_head_mask_differing_by_head_blocks_removal() -> None:
    torch.manual_seed(2)
    layer = HFAttention()
    with torch.no_grad():
        layer.v.weight[16:32] = 0
        layer.v.bias[16:32] = 0

    class WithHeadBias(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer
            self.register_buffer("bias", torch.randn(1, 4, 10, 10))

        def forward(self, x):
            return self.layer(x, self.bias)

    report, _ = _run(WithHeadBias(), (torch.randn(1, 10, 64),))
    assert not _heads(report, "heads")
    assert any("differs by head" in m for _, m in _heads(report, "heads.not-attention")), report.diagnostics
