"""ONNX backend node tests (a seeded, op-stratified sample) through compile/run on x86: never a silent wrong result.

``conformance_expected.json`` lists every case not expected to pass, with why. A case not listed must pass; a wrong
result always fails; a listed case that now fails differently (a new internal error...) fails. The whole suite is
``benchmarks/conformance.py`` (about 10 minutes with 2 workers); this runs ``TEST_SAMPLE`` cases of it.
"""

from __future__ import annotations

import collections
import json
import random
import pathlib
import sys

import pytest

pytest.importorskip("tvm")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import conformance  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.tvm]

EXPECTED = json.loads(conformance.EXPECTED.read_text())["cases"]


@pytest.fixture(scope="module")
def results():
    root = conformance.materialize()
    index = conformance.load_index(root)
    names = conformance.sample(index, conformance.TEST_SAMPLE, conformance.TEST_SEED)
    return index, conformance.run_cases(root, names, workers=2, timeout=180, with_ort=False)


def _groups():
    root = conformance.materialize()
    index = conformance.load_index(root)
    names = conformance.sample(index, conformance.TEST_SAMPLE, conformance.TEST_SEED)
    groups = collections.defaultdict(list)
    for name in names:
        op = index[name]
        groups[op[0].upper() if op[:1].isalpha() else "?"].append(name)
    return sorted(groups.items())


@pytest.mark.parametrize("letter,names", _groups(), ids=[g for g, _ in _groups()])
def test_node_cases(results, letter, names):
    _, got = results
    problems = []
    for name in names:
        record = got[name]
        status = record["status"]
        expected = EXPECTED.get(name, {}).get("status", "pass")
        if status == "wrong":
            problems.append(f"{name}: WRONG RESULT (no error): {record.get('reason')}")
        elif status != "pass" and status != expected:
            problems.append(f"{name}: {status} (expected {expected}): {record.get('reason')}")
    assert not problems, "\n".join(problems)


# The same contract on the cross targets: a sample of the cases x86 passes, compiled for the target and run where its
# code runs (arm under qemu-aarch64, wasm in wasmtime). Never a wrong result; every case passes or is refused.
CROSS_SAMPLE = {"arm": (24, 1), "wasm": (24, 2)}


def _cross_names(target: str) -> list[str]:
    root = conformance.materialize()
    index = conformance.load_index(root)
    size, seed = CROSS_SAMPLE[target]
    passing = sorted(n for n in index if n not in EXPECTED)
    return sorted(random.Random(seed).sample(passing, size))


@pytest.mark.cross
@pytest.mark.parametrize("target,tools", [("arm", ("qemu-aarch64", "aarch64-linux-gnu-g++")),
                                          ("wasm", ("clang-14", "wasm-ld-14"))])
def test_cross_target_sample(target, tools):
    import shutil

    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (make test installs them)")
    names = _cross_names(target)
    got = conformance.run_cases(conformance.materialize(), names, workers=2, timeout=300, with_ort=False,
                                target=target)
    problems = [f"{name}: {r['status']}: {r.get('reason')}" for name, r in sorted(got.items())
                if r["status"] not in ("pass", "refused")]
    assert not problems, "\n".join(problems)
    passed = sum(1 for r in got.values() if r["status"] == "pass")
    assert passed >= len(names) * 3 // 4, {n: r.get("reason") for n, r in got.items() if r["status"] != "pass"}
    assert all(r["reason"] for r in got.values() if r["status"] == "refused")
