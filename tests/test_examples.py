"""The bundled examples: pruned and exported end to end, every export numerically equal to its input."""

from __future__ import annotations

import pytest

import sparseforge
from sparseforge.passes.rewrites.prune import PruneConfig


@pytest.mark.torch
@pytest.mark.parametrize("factory,skip", [
    ("transformer_encoder", ("*self_attn*", "*linear2")),
    ("small_cnn", ("classifier",)),
])
def test_channel_pruned_example_shrinks_exactly(tmp_path, examples_dir, factory, skip) -> None:
    source = f"{examples_dir}/models.py:{factory}"
    pruned = tmp_path / "pruned.onnx"
    sparseforge.prune(source, pruned, PruneConfig("channel", 0.5, skip=skip))
    result = sparseforge.export(pruned, tmp_path / "small.onnx", verify=True)
    assert result.comparison.ok
    assert result.after.parameters < 0.8 * result.before.parameters
    assert result.after.flops < 0.8 * result.before.flops


@pytest.mark.torch
def test_inspect_names_layers_after_pytorch(examples_dir) -> None:
    result = sparseforge.inspect(f"{examples_dir}/models.py:transformer_encoder", with_rank=False)
    names = [layer.node for layer in result.layers]
    assert names[:4] == ["encoder.layers.0.self_attn.in_proj", "encoder.layers.0.self_attn.out_proj",
                         "encoder.layers.0.linear1", "encoder.layers.0.linear2"]
