"""Optional MetaSchedule tuning: a persistent JSON database that later builds reuse."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

pytest.importorskip("tvm")

from conftest import assert_close  # noqa: E402

from sparseforge.codegen import _tvm, vm  # noqa: E402
from sparseforge.codegen import build as cg  # noqa: E402

pytestmark = [pytest.mark.tvm, pytest.mark.slow]


def _column_sum_module():
    """A reduction over the leading axis: no specialised rule takes it (the fallback would)."""
    relax = _tvm.relax
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((64, 96), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.sum(x, axis=[0]))
        bb.emit_func_output(out)
    return bb.get()


def test_tune_writes_json_database_and_build_reuses_it(tmp_path, host_target):
    mod = _column_sum_module()
    db = tmp_path / "db"
    tuned = cg.tune(mod, host_target, trials=4, database_dir=str(db))
    assert tuned == ["sum"]
    records = pathlib.Path(db, "database_tuning_record.json").read_text().splitlines()
    assert records and all(json.loads(line) for line in records)
    assert pathlib.Path(db, "database_workload.json").stat().st_size > 0

    tuned_func = cg.optimize(mod, host_target, database_dir=str(db))["sum"]
    default_func = cg.optimize(mod, host_target)["sum"]
    assert tuned_func.script() != default_func.script()  # the database record was applied
    x = np.random.default_rng(0).standard_normal((64, 96)).astype("float32")
    got = vm.run(cg.build(mod, host_target, database_dir=str(db)), [x], threads=2)[0]
    assert_close(got, x.astype(np.float64).sum(0))
