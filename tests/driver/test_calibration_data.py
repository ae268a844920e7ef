"""Calibration data: read from .npz / FILE.py:LOADER / random, checked against the model's inputs (one clear
error each for wrong names, shapes, dtypes, empty or non-finite data, pickles), split and batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import init, make_model, to_ir, vinfo
from onnx import TensorProto, helper

from sparseforge.driver.calibration_data import CalibrationDataError, load


def _model():
    w = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Cast", ["ids"], ["idf"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Add", ["h", "idf"], ["y"], name="add")]
    return to_ir(make_model(nodes, [vinfo("x", [2, 16]), vinfo("ids", [2, 8], TensorProto.INT64)],
                            [vinfo("y", [2, 8])], [init("w", w)]))


def _npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "calib.npz"
    np.savez(path, **arrays)
    return str(path)


def good(n=10):
    rng = np.random.default_rng(1)
    return dict(x=rng.standard_normal((n, 16)).astype(np.float32), ids=rng.integers(0, 5, (n, 8)))


def test_npz_is_read_split_and_batched(tmp_path: Path) -> None:
    data = load(_npz(tmp_path, **good(10)), _model())
    assert data.samples == 10 and data.batch == 2 and data.runs == 5 and not data.random
    assert data.arrays["ids"].dtype == np.int64 and data.arrays["x"].dtype == np.float32
    fit, held = data.split(0.25)
    assert fit.runs == 4 and held.runs == 1
    batches = list(held.batches())
    assert len(batches) == 1 and batches[0]["x"].shape == (2, 16)
    np.testing.assert_array_equal(batches[0]["x"], data.arrays["x"][8:10])
    assert data.split(0.0)[1] is None


@pytest.mark.parametrize("arrays,message", [
    (dict(x=good()["x"]), "missing 'ids'"),
    (dict(good(), extra=np.zeros((10, 2))), "not model inputs: 'extra'"),
    (dict(good(), x=np.zeros((10, 15), np.float32)), "has shape \\[10, 15\\]; expected \\[samples, 16\\]"),
    (dict(good(), x=np.zeros((10, 2, 16), np.float32)), "expected \\[samples, 16\\]"),
    (dict(good(), ids=np.zeros((10, 8), np.float32)), "dtype float32; the model takes int64"),
    (dict(x=np.zeros((0, 16), np.float32), ids=np.zeros((0, 8), np.int64)), "no samples"),
    (dict(x=np.zeros((1, 16), np.float32), ids=np.zeros((1, 8), np.int64)), "fewer than the model's batch size 2"),
    (dict(good(), x=np.full((10, 16), np.nan, np.float32)), "NaN or infinite"),
    (dict(x=good()["x"], ids=good(12)["ids"]), "different sample counts"),
])
def test_bad_data_gets_one_clear_error(tmp_path: Path, arrays, message) -> None:
    with pytest.raises(CalibrationDataError, match=message) as info:
        load(_npz(tmp_path, **arrays), _model())
    assert info.value.exit_code == 2


def test_files_that_are_not_plain_arrays(tmp_path: Path) -> None:
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object), ids=np.zeros((1, 8)))
    with pytest.raises(CalibrationDataError, match="without unpickling"):
        load(str(pickled), _model())
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CalibrationDataError, match="not a readable .npz"):
        load(str(tmp_path / "junk.npz"), _model())
    with pytest.raises(CalibrationDataError, match="no such calibration file"):
        load(str(tmp_path / "missing.npz"), _model())
    with pytest.raises(CalibrationDataError, match="too few"):
        load(_npz(tmp_path, **good(2)), _model()).split(0.25)


def test_python_loader_and_random(tmp_path: Path) -> None:
    loader = tmp_path / "data.py"
    loader.write_text("import numpy as np\n"
                      "def load():\n    return {'x': np.ones((4, 16), np.float32), 'ids': np.zeros((4, 8), np.int64)}\n"
                      "def wrong():\n    return [1, 2]\n")
    assert load(f"{loader}:load", _model()).samples == 4
    with pytest.raises(CalibrationDataError, match="not a mapping"):
        load(f"{loader}:wrong", _model())
    with pytest.raises(CalibrationDataError, match="no function 'nope'"):
        load(f"{loader}:nope", _model())
    data = load("random:6", _model())
    assert data.random and data.samples == 6 and data.arrays["ids"].dtype == np.int64
    with pytest.raises(CalibrationDataError, match="random:N"):
        load("random:many", _model())
