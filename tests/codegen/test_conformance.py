"""ONNX backend node tests (a seeded, op-stratified sample) through compile/run on x86: never a silent wrong result.

``conformance_expected.json`` lists every case not expected to pass, with why. A case not listed must pass; a wrong
result always fails; a listed case that now fails differently (a new internal error...) fails. The whole suite is
``benchmarks/conformance.py`` (about 10 minutes with 2 workers); this runs ``TEST_SAMPLE`` cases of it.
"""

from __future__ import annotations

import collections
import json
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
