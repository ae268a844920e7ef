"""The fact registry, the StructureAnalysis pass that runs it and the inspect table rendered from it."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import make_model, to_ir, vinfo
from onnx import helper
from rich.console import Console

from sparseforge import render
from sparseforge.ir import keys
from sparseforge.passes.analysis import FACTS, IDENTITY_FIELDS, WeightStructure, get, names
from sparseforge.passes.analysis.analyse import StructureAnalysisPass, facts_of


def test_registry_order_and_lookup() -> None:
    assert names() == ("density", "nm", "blocks", "channels", "rank", "long_conv", "diagonal_blocks",
                       "monarch", "sparse_low_rank")
    assert get("rank") is FACTS[4]
    with pytest.raises(KeyError, match="no analysis fact 'nope'"):
        get("nope")


def test_weight_structure_fields_are_identity_then_facts_in_order() -> None:
    fact_fields = tuple(f for fact in FACTS for f in fact.fields)
    assert tuple(f.name for f in dataclasses.fields(WeightStructure)) == IDENTITY_FIELDS + fact_fields


def test_pass_stores_every_fact_on_the_node(analysed) -> None:
    facts = facts_of(analysed.node)
    assert tuple(facts) == names()
    for fact in FACTS:
        assert fact.to_fields(facts[fact.name]) == {f: analysed.layer[f] for f in fact.fields}
    structure = analysed.node.meta[keys.META_STRUCTURE]
    assert structure.to_dict() == analysed.layer
    assert analysed.result.modified is False
    assert analysed.result.report.counts == {"weights": 1, "layers-with-dead-outputs": 1}


def test_every_fact_renders_one_cell_per_column(analysed) -> None:
    for fact in FACTS:
        assert len(fact.cells(analysed.layer)) == len(fact.columns)


def test_inspect_table_iterates_the_registry(analysed) -> None:
    table = render.layers_table([analysed.node.meta[keys.META_STRUCTURE]])
    headers = [c.header for c in table.columns]
    assert headers == ["node", "op", "shape", "density", "best N:M", "best block", "dead out", "dead in",
                       "rank / 99%"]
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "0.375" in text and "2:4 (100%)" in text and "16x1 (50%)" in text and "2 / " in text


def test_activation_matmul_is_not_a_weight() -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="attn")
    model = to_ir(make_model([node], [vinfo("a", [2, 3]), vinfo("b", [3, 4])], [vinfo("y", [2, 4])]))
    assert StructureAnalysisPass()(model).report.details["layers"] == []
    assert facts_of(next(iter(model.graph))) == {}
