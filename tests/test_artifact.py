"""The artifact format module: output folder checks, atomic writes, manifest reading."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from sparseforge import artifact
from sparseforge.errors import ModelLoadError, OutputPathError


def test_check_outdir_refuses_foreign_folders_and_files(tmp_path) -> None:
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="not a sparseforge artifact"):
        artifact.check_outdir(tmp_path / "foreign")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="not a folder"):
        artifact.check_outdir(tmp_path / "file")
    with pytest.raises(OutputPathError, match="does not exist"):
        artifact.check_outdir(tmp_path / "missing" / "out")
    assert artifact.check_outdir(tmp_path / "new") == tmp_path / "new"


def test_write_atomically_replaces_an_old_artifact_and_leaves_nothing_on_failure(tmp_path) -> None:
    out = tmp_path / "art"

    def fill(tmp):
        artifact.write_manifest(tmp, {"format": artifact.FORMAT, "version": artifact.VERSION, "n": 1})

    artifact.write_atomically(out, fill)
    assert artifact.read_manifest(out)["n"] == 1

    def broken(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        artifact.write_atomically(out, broken)
    assert artifact.read_manifest(out)["n"] == 1  # the old artifact is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temporary folder left


@pytest.mark.parametrize("content, message", [(None, "no manifest.json"), ("{", "not valid JSON"),
                                              ("[]", "not a sparseforge artifact manifest"),
                                              ('{"format": "other"}', "not a sparseforge artifact manifest")])
def test_read_manifest_errors(tmp_path, content, message) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    if content is not None:
        (folder / artifact.MANIFEST).write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        artifact.read_manifest(folder)


def test_io_specs_skip_initializers_and_keep_scalars() -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [], [1.0])])
    inputs, outputs = artifact.io_specs(helper.make_model(graph))
    assert inputs == [{"name": "x", "shape": [], "dtype": "float32"}]
    assert outputs == [{"name": "y", "shape": [], "dtype": "float32"}]
    assert [a.shape for a in artifact.example_arrays({"inputs": inputs})] == [()]
    json.dumps(inputs)
    assert isinstance(onnx.ModelProto(), onnx.ModelProto)
