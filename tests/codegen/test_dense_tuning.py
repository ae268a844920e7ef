"""Optional MetaSchedule tuning: a persistent JSON database that later builds reuse.

The tuning runs in a fresh interpreter: MetaSchedule parses TVM's tensor-intrinsic library with TVMScript, whose
``inspect.getmodule`` calls scan ``sys.modules`` every time; in the test process (torch, ONNX Runtime... loaded)
that scan made this one test take 3-4.5 minutes, 90% of it in ``inspect``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tvm")

pytestmark = [pytest.mark.tvm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    import numpy as np
    from sparseforge.codegen import _tvm, vm
    from sparseforge.codegen import build as cg
    from sparseforge.codegen.cpu_target import detect_x86

    relax = _tvm.relax
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((64, 96), "float32"))
    with bb.function("main", [x]):  # a reduction over the leading axis: no specialised rule takes it
        with bb.dataflow():
            out = bb.emit_output(relax.op.sum(x, axis=[0]))
        bb.emit_func_output(out)
    mod = bb.get()
    target = detect_x86(threads=2)
    db = pathlib.Path(sys.argv[1])
    tuned = cg.tune(mod, target, trials=4, database_dir=str(db))
    assert tuned == ["sum"], tuned
    records = pathlib.Path(db, "database_tuning_record.json").read_text().splitlines()
    assert records and all(json.loads(line) for line in records)
    assert pathlib.Path(db, "database_workload.json").stat().st_size > 0

    tuned_func = cg.optimize(mod, target, database_dir=str(db))["sum"]
    default_func = cg.optimize(mod, target)["sum"]
    assert tuned_func.script() != default_func.script()  # the database record was applied
    xs = np.random.default_rng(0).standard_normal((64, 96)).astype("float32")
    got = vm.run(cg.build(mod, target, database_dir=str(db)), [xs], threads=2)[0]
    np.testing.assert_allclose(got, xs.astype(np.float64).sum(0), rtol=1e-4, atol=1e-4)
    print("ok")
""")


def test_tune_writes_json_database_and_build_reuses_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "db")], env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]
