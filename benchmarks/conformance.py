"""ONNX backend node tests through sparseforge (x86), compared like onnx's own backend runner; ORT alongside.

Every node test case of the installed ``onnx`` package (1,884 in onnx 1.23, built in memory by
``onnx.backend.test.loader.load_node_model_tests``) is written once to a cache folder (``model.onnx`` + the
inputs/outputs pickled), then compiled with ``sparseforge.api.compile(model, outdir, target="x86", threads=1,
dense=True)`` and run with ``sparseforge.api.run`` in worker processes, each case under a timeout. Statuses:

- ``pass``: same output count, shapes, dtypes, ``np.testing.assert_allclose(rtol=1e-3, atol=1e-7)``; a case whose
  shape/axes parameters are graph inputs (refused: they must be constants) is compiled again with them bound to the
  case's values (``compile --bind``, recorded as ``bound``; the summary counts those passes separately)
- ``wrong``: compiled and ran without an error, but the outputs differ (a silent wrong result: never acceptable)
- ``refused``: compile raised a ``SparseforgeError`` with exit code 2 (a clean refusal)
- ``internal``: compile raised anything else (``tvm`` flags the ones raised inside TVM)
- ``run_error``: compiled, but running the artifact raised
- ``timeout`` / ``crash``: the worker exceeded the per-case timeout / died

The same cases run in ONNX Runtime (CPU) for the reference column. Writes the per-case JSON and ``COVERAGE.md``.

    .venv/bin/python benchmarks/conformance.py                          # all cases, 2 workers
    .venv/bin/python benchmarks/conformance.py --sample 300 --seed 0    # a seeded, op-stratified sample
    .venv/bin/python benchmarks/conformance.py --cases 'test_expand*'   # fnmatch patterns
    .venv/bin/python benchmarks/conformance.py --write-expected         # refresh tests/codegen/conformance_expected.json
    .venv/bin/python benchmarks/conformance.py --target arm --expected-pass --random 100 --seed 3 --no-ort

``tests/codegen/test_conformance.py`` runs a seeded sample (:data:`TEST_SAMPLE`) against the expectation file.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fnmatch
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import pickle
import random
import shutil
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import onnx

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXPECTED = ROOT / "tests" / "codegen" / "conformance_expected.json"
RTOL, ATOL = 1e-3, 1e-7
STATUSES = ("pass", "wrong", "internal", "refused", "run_error", "timeout", "crash", "compiled")
TARGETS = ("x86", "arm", "wasm", "cuda")
# The sample the test in `make test` runs: every op group once, then seeded random cases up to this size.
TEST_SAMPLE, TEST_SEED = 320, 0
# A case refused because shape/axes parameters are graph inputs is compiled again with those inputs bound to the
# case's values (`compile --bind`, what a user with fixed parameters does), at most this many times.
BIND_ROUNDS = 2


# ------------------------------------------------------------------ materializing the cases

def cache_root() -> pathlib.Path:
    base = os.environ.get("SPARSEFORGE_CACHE") or os.path.join(tempfile.gettempdir(), "sparseforge-cache")
    return pathlib.Path(base) / f"onnx-node-tests-{onnx.__version__}"


def _normalize(value):
    """TensorProto -> ndarray (ml_dtypes for float8/bfloat16/int4), lists element-wise, None kept."""
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if value is None or isinstance(value, np.ndarray):
        return value
    return np.asarray(value)


def materialize(root: pathlib.Path | None = None) -> pathlib.Path:
    """Write every node test case once to ``root/<case>/{model.onnx,data.pkl}``; returns ``root``."""
    root = root or cache_root()
    done = root / "DONE"
    if done.exists():
        return root
    from onnx.backend.test.loader import load_node_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_node_model_tests()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".materialize-", dir=_mkdir(root.parent)))
    ops = op_names()
    index = {}
    for case in cases:
        folder = tmp / case.name
        folder.mkdir()
        (folder / "model.onnx").write_bytes(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        data = dict(inputs=[_normalize(v) for v in inputs], outputs=[_normalize(v) for v in outputs],
                    rtol=case.rtol, atol=case.atol)
        (folder / "data.pkl").write_bytes(pickle.dumps(data))
        index[case.name] = primary_op(case.name, case.model, ops)
    (tmp / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    done.write_text(onnx.__version__)
    return root


def _mkdir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def op_names() -> dict[str, str]:
    """{snake_case name: ONNX op} for every op schema (``LayerNormalization`` -> ``layer_normalization``)."""
    names = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        snake = "".join("_" + c.lower() if c.isupper() else c for c in schema.name).lstrip("_")
        names.setdefault(snake, schema.name)
        names.setdefault(schema.name.lower(), schema.name)
    return names


def primary_op(case: str, model: onnx.ModelProto, ops: dict[str, str]) -> str:
    """The op a case tests: its only node's op, else the longest op name the case name starts with."""
    nodes = list(model.graph.node)
    if len(nodes) == 1:
        return nodes[0].op_type
    stem = case.removeprefix("test_")
    best = max((k for k in ops if stem == k or stem.startswith(k + "_")), key=len, default=None)
    if best is not None:
        return ops[best]
    return collections.Counter(n.op_type for n in nodes).most_common(1)[0][0] if nodes else "?"


def load_index(root: pathlib.Path) -> dict[str, str]:
    return json.loads((root / "index.json").read_text())


def sample(index: dict[str, str], size: int, seed: int) -> list[str]:
    """Every op group once (seeded choice), then seeded random cases up to ``size``; sorted."""
    rng = random.Random(seed)
    by_op = collections.defaultdict(list)
    for name, op in sorted(index.items()):
        by_op[op].append(name)
    chosen = {rng.choice(names) for op, names in sorted(by_op.items())}
    rest = sorted(set(index) - chosen)
    rng.shuffle(rest)
    chosen.update(rest[:max(0, size - len(chosen))])
    return sorted(chosen)


# ------------------------------------------------------------------ one case

#: Ops whose every output is a sum over a whole axis (Fourier transforms): an output that should be 0 carries the
#: rounding of that sum, ~eps * sum |x|, so their absolute tolerance is 1e-5 of the largest expected value (the
#: onnx test data itself, made with float64 NumPy, fails the fixed atol=1e-7 in ONNX Runtime for all of them).
WHOLE_AXIS_SUMS = frozenset({"DFT", "STFT"})


def case_atol(model: onnx.ModelProto, data: dict) -> float:
    atol = data.get("atol", ATOL)
    if any(n.op_type in WHOLE_AXIS_SUMS for n in model.graph.node):
        scale = max((float(np.abs(np.asarray(o, np.float64)).max()) for o in data["outputs"]
                     if isinstance(o, np.ndarray) and o.size and o.dtype.kind == "f"), default=0.0)
        atol = max(atol, 1e-5 * scale)
    return atol


def compare(ref_outputs, outputs, rtol=RTOL, atol=ATOL) -> None:
    """onnx's backend runner comparison (``Runner.assert_similar_outputs``): count, shape, dtype, allclose."""
    np.testing.assert_equal(len(outputs), len(ref_outputs))
    for i, (out, ref) in enumerate(zip(outputs, ref_outputs)):
        if isinstance(ref, (list, tuple)) or isinstance(out, (list, tuple)):
            if not isinstance(out, (list, tuple)) or not isinstance(ref, (list, tuple)):
                raise AssertionError(f"output {i}: expected {type(ref).__name__}, got {type(out).__name__}")
            compare(ref, out, rtol, atol)
            continue
        if ref is None or out is None:
            if (ref is None) != (out is None):
                raise AssertionError(f"output {i}: expected {ref!r:.40}, got {out!r:.40}")
            continue
        out, ref = np.asarray(out), np.asarray(ref)
        np.testing.assert_array_equal(out.shape, ref.shape, err_msg=f"Output {i} has incorrect shape")
        if ref.dtype == object:
            np.testing.assert_array_equal(out, ref)
            continue
        np.testing.assert_equal(out.dtype, ref.dtype)
        tol = rtol
        if out.dtype.name == "bfloat16":
            tol = max(rtol, 2 ** -6)
        if out.dtype.name not in np.sctypeDict or out.dtype.kind == "V" or "float8" in out.dtype.name \
                or out.dtype.name in ("bfloat16", "int4", "uint4", "int2", "uint2", "float4_e2m1fn"):
            out, ref = out.astype(np.float32), ref.astype(np.float32)
        np.testing.assert_allclose(out, ref, rtol=tol, atol=atol)


def _short(exc: BaseException, limit: int = 400) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # TVM errors carry a C++ backtrace first; keep the message lines.
    msg = next((ln for ln in lines if "Error" in ln and not ln.lstrip().startswith(("File", "at ", "0:", "1:"))),
               lines[0] if lines else type(exc).__name__)
    return msg[:limit]


def _raised_in_tvm(exc: BaseException) -> bool:
    tb = traceback.extract_tb(exc.__traceback__)
    return bool(tb) and ("/tvm/" in tb[-1].filename or "tvm_ffi" in tb[-1].filename) or "tvm" in type(exc).__module__


def _run_artifact(outdir: pathlib.Path, inputs: dict, target: str) -> dict | None:
    """Run the artifact on ``inputs`` where its code runs: in process (x86), or with the target's first available
    runner (qemu-aarch64, wasmtime, a GPU). None when no runner is available here (cuda without a GPU)."""
    from sparseforge import api

    if target == "x86":
        return api.run(outdir, inputs)
    from sparseforge import artifact
    from sparseforge.codegen.targets import get_target
    from sparseforge.runtime import runners

    available = [r for r in runners.runners(get_target(target).runner) if r.unavailable() is None]
    if not available:
        return None
    return available[0].run(outdir, artifact.read_manifest(outdir), inputs)


def run_sparseforge(case_dir: pathlib.Path, model: onnx.ModelProto, data: dict, target: str = "x86") -> dict:
    from sparseforge import api
    from sparseforge.errors import SparseforgeError

    record: dict = {}
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    with tempfile.TemporaryDirectory(prefix="sf-conf-") as tmp:
        outdir = pathlib.Path(tmp) / "artifact"
        start = time.perf_counter()
        bind: dict = {}
        try:
            for _ in range(BIND_ROUNDS + 1):
                try:
                    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        api.compile(model, outdir, target=target, threads=1, dense=True, bind=bind or None)
                    break
                except SparseforgeError as exc:  # run-time shape parameters: compile again as `--bind` would
                    more = [n for n in getattr(exc, "bindable", ()) if n in names and n not in bind]
                    if not more or len(bind) >= BIND_ROUNDS * 4:
                        raise
                    bind.update({n: data["inputs"][names.index(n)] for n in more})
            if bind:
                record["bound"] = sorted(bind)
        except SparseforgeError as exc:
            record["compile_s"] = round(time.perf_counter() - start, 2)
            kind = "refused" if exc.exit_code == 2 else "internal"
            return dict(record, status=kind, reason=exc.message.splitlines()[0][:400],
                        error=type(exc).__name__)
        except BaseException as exc:  # noqa: BLE001 - any other exception is a bug
            record["compile_s"] = round(time.perf_counter() - start, 2)
            return dict(record, status="internal", reason=_short(exc), error=type(exc).__name__,
                        tvm=_raised_in_tvm(exc))
        record["compile_s"] = round(time.perf_counter() - start, 2)
        try:
            result = _run_artifact(outdir, dict(zip(names, data["inputs"])), target)
        except BaseException as exc:  # noqa: BLE001
            return dict(record, status="run_error", reason=_short(exc), error=type(exc).__name__)
        if result is None:
            return dict(record, status="compiled", reason=f"no {target} device here: compiled, not run")
    out_names = [o.name for o in model.graph.output]
    outputs = [result.get(name) for name in out_names]
    missing = [name for name in out_names if name not in result]
    try:
        if missing:
            raise AssertionError(f"outputs missing: {missing}")
        compare(data["outputs"], outputs, data.get("rtol", RTOL), case_atol(model, data))
    except AssertionError as exc:
        return dict(record, status="wrong", reason=" ".join(str(exc).split())[:400])
    return dict(record, status="pass")


def run_ort(model: onnx.ModelProto, data: dict) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: v for i, v in zip(session.get_inputs(), data["inputs"])}
        outputs = session.run(None, feeds)
    except BaseException as exc:  # noqa: BLE001
        return dict(status="error", reason=_short(exc, 200))
    try:
        compare(data["outputs"], outputs, data.get("rtol", RTOL), case_atol(model, data))
    except (AssertionError, TypeError, ValueError) as exc:
        return dict(status="wrong", reason=" ".join(str(exc).split())[:200])
    return dict(status="pass")


def run_case(case_dir: pathlib.Path, with_ort: bool = True, target: str = "x86") -> dict:
    model = onnx.load(case_dir / "model.onnx")
    data = pickle.loads((case_dir / "data.pkl").read_bytes())
    record = run_sparseforge(case_dir, model, data, target)
    if with_ort:
        record["ort"] = run_ort(model, data)
    return record


# ------------------------------------------------------------------ worker processes with a per-case timeout

def _worker(conn) -> None:
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT / "src"))
    while True:
        item = conn.recv()
        if item is None:
            return
        case_dir, with_ort, target = item
        try:
            record = run_case(pathlib.Path(case_dir), with_ort, target)
        except BaseException as exc:  # noqa: BLE001 - the harness must survive anything
            record = dict(status="internal", reason=f"harness: {_short(exc)}")
        conn.send(record)


class _Slot:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.case: str | None = None
        self.deadline = 0.0
        self.started = 0.0

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def run_cases(root: pathlib.Path, names: list[str], *, workers: int = 2, timeout: float = 180.0,
              with_ort: bool = True, progress=None, target: str = "x86") -> dict[str, dict]:
    """Run ``names`` for ``target`` in ``workers`` processes; {case: record}. ``progress(done, total, name,
    record)``."""
    ctx = multiprocessing.get_context("spawn")
    pending = collections.deque(names)
    results: dict[str, dict] = {}
    slots = [_Slot(ctx) for _ in range(min(workers, len(names)) or 1)]

    def assign(slot: _Slot) -> None:
        if pending:
            slot.case = pending.popleft()
            slot.started = time.monotonic()
            slot.deadline = slot.started + timeout
            slot.conn.send((str(root / slot.case), with_ort, target))
        else:
            slot.case = None

    def finish(name: str, record: dict) -> None:
        results[name] = record
        if progress:
            progress(len(results), len(names), name, record)

    try:
        for slot in slots:
            assign(slot)
        while any(s.case is not None for s in slots):
            busy = [s for s in slots if s.case is not None]
            wait = max(0.05, min(s.deadline for s in busy) - time.monotonic())
            ready = multiprocessing.connection.wait([s.conn for s in busy], timeout=wait)
            for i, slot in enumerate(slots):
                if slot.case is None:
                    continue
                if slot.conn in ready:
                    try:
                        record = slot.conn.recv()
                    except (EOFError, OSError):
                        record = dict(status="crash", reason=f"worker died (exit code {slot.proc.exitcode})")
                        finish(slot.case, record)
                        slot.kill()
                        slots[i] = slot = _Slot(ctx)
                        assign(slot)
                        continue
                    finish(slot.case, record)
                    assign(slot)
                elif time.monotonic() > slot.deadline:
                    finish(slot.case, dict(status="timeout", reason=f"no result after {timeout:.0f} s"))
                    slot.kill()
                    slots[i] = slot = _Slot(ctx)
                    assign(slot)
    finally:
        for slot in slots:
            with contextlib.suppress(Exception):
                slot.conn.send(None)
            slot.proc.join(5)
            if slot.proc.is_alive():
                slot.kill()
    return results


# ------------------------------------------------------------------ reports

def summary(results: dict[str, dict]) -> dict:
    counts = collections.Counter(r["status"] for r in results.values())
    ort = collections.Counter(r.get("ort", {}).get("status", "-") for r in results.values())
    tvm = sum(1 for r in results.values() if r["status"] == "internal" and r.get("tvm"))
    ort_pass = {n for n, r in results.items() if r.get("ort", {}).get("status") == "pass"}
    both = sum(1 for n in ort_pass if results[n]["status"] == "pass")
    unbound = sum(1 for n in ort_pass if results[n]["status"] == "pass" and not results[n].get("bound"))
    bound = sum(1 for r in results.values() if r["status"] == "pass" and r.get("bound"))
    return dict(total=len(results), **{s: counts.get(s, 0) for s in STATUSES}, internal_in_tvm=tvm,
                pass_with_bind=bound, ort_pass=ort.get("pass", 0), ort_wrong=ort.get("wrong", 0),
                ort_error=ort.get("error", 0), pass_of_ort_pass=both, pass_of_ort_pass_without_bind=unbound)


def coverage_markdown(results: dict[str, dict], index: dict[str, str], meta: dict) -> str:
    s = summary(results)
    pct = (lambda n: f"{100.0 * n / s['total']:.1f}%") if s["total"] else (lambda n: "-")
    lines = [
        f"# ONNX node-test conformance ({meta.get('target', 'x86')})",
        "",
        f"Generated by `{meta['command']}` (onnx {onnx.__version__}, onnxruntime {meta.get('ort', '?')}, "
        f"{meta['when']}, {meta['seconds']:.0f} s with {meta['workers']} workers). Compared like onnx's backend "
        f"runner: output count, shape, dtype, rtol={RTOL:g}, atol={ATOL:g}. See `benchmarks/conformance.py`.",
        "",
        "| status | sparseforge | share |",
        "|---|---:|---:|",
    ]
    for status in STATUSES:
        extra = f" ({s['internal_in_tvm']} raised inside TVM)" if status == "internal" and s["internal"] else ""
        if status == "pass" and s["pass_with_bind"]:
            extra = f" ({s['pass_with_bind']} of them with shape/axes inputs bound by `--bind`)"
        lines.append(f"| {status}{extra} | {s[status]} | {pct(s[status])} |")
    lines += [f"| **total** | {s['total']} | |", "",
              f"ONNX Runtime on the same cases: pass {s['ort_pass']}, wrong {s['ort_wrong']}, "
              f"error {s['ort_error']}. sparseforge passes {s['pass_of_ort_pass']} of the {s['ort_pass']} "
              f"cases ORT passes ({100.0 * s['pass_of_ort_pass'] / max(1, s['ort_pass']):.1f}%); without "
              f"`--bind`, {s['pass_of_ort_pass_without_bind']} "
              f"({100.0 * s['pass_of_ort_pass_without_bind'] / max(1, s['ort_pass']):.1f}%).", ""]
    wrong = sorted(n for n, r in results.items() if r["status"] in ("wrong", "internal", "timeout", "crash"))
    lines += ["## Wrong results, internal errors, timeouts, crashes", ""]
    if not wrong:
        lines.append("None.")
    for name in wrong:
        r = results[name]
        lines.append(f"- `{name}` ({index.get(name, '?')}): **{r['status']}** - {r.get('reason', '')[:200]}")
    lines += ["", "## Per op", "", "`bound`: passes that needed `--bind` for shape/axes inputs.", "",
              "| op | cases | pass | bound | wrong | internal | refused | run error | other | ORT pass |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by_op = collections.defaultdict(list)
    for name, r in results.items():
        by_op[index.get(name, "?")].append(r)
    for op in sorted(by_op):
        rs = by_op[op]
        c = collections.Counter(r["status"] for r in rs)
        other = c["timeout"] + c["crash"]
        ort = sum(1 for r in rs if r.get("ort", {}).get("status") == "pass")
        bound = sum(1 for r in rs if r["status"] == "pass" and r.get("bound"))
        lines.append(f"| {op} | {len(rs)} | {c['pass']} | {bound} | {c['wrong']} | {c['internal']} | {c['refused']} | "
                     f"{c['run_error']} | {other} | {ort} |")
    if meta.get("target", "x86") == "x86":
        lines += other_targets_markdown()
    lines += ["", "## Refusals by reason", "", "| reason | cases |", "|---|---:|"]
    reasons = collections.Counter(_reason_key(r.get("reason", "")) for r in results.values()
                                  if r["status"] == "refused")
    for reason, n in reasons.most_common():
        lines.append(f"| {reason.replace('|', '/')} | {n} |")
    return "\n".join(lines) + "\n"


def other_targets_markdown() -> list[str]:
    """A table of the latest sample runs for the other targets (``conformance_TARGET.json``), if any."""
    rows = []
    for target in TARGETS[1:]:
        path = RESULTS / f"conformance_{target}.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        s, m = doc["summary"], doc["meta"]
        rows.append(f"| {target} | {s['total']} | {s['pass']} | {s['wrong']} | {s['internal']} | {s['refused']} | "
                    f"{s['run_error']} | {s.get('compiled', 0)} | `{m['command']}` ({m['when']}) |")
    if not rows:
        return []
    return ["", "## Other targets (samples)", "",
            "Compiled for the target and run where its code runs (arm: qemu-aarch64, wasm: wasmtime; cuda without "
            "a GPU: compiled only). Details: `benchmarks/results/COVERAGE_TARGET.md`.", "",
            "| target | cases | pass | wrong | internal | refused | run error | compiled only | command |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|", *rows]


def _reason_key(reason: str) -> str:
    return reason.split("\n")[0][:160]


def write_expected(results: dict[str, dict], path: pathlib.Path = EXPECTED) -> None:
    """Every case not expected to pass, with its status and reason (``pass`` cases are implied)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    cases = dict(old.get("cases", {}))
    for name, r in results.items():
        if r["status"] == "pass":
            cases.pop(name, None)
        else:
            cases[name] = dict(status=r["status"], reason=r.get("reason", "")[:300])
    doc = dict(note="ONNX node test cases (onnx package) not expected to pass on x86, with why; every other case "
                    "must pass. Refresh with: .venv/bin/python benchmarks/conformance.py --write-expected",
               onnx=onnx.__version__, cases=dict(sorted(cases.items())))
    path.write_text(json.dumps(doc, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per case")
    parser.add_argument("--sample", type=int, default=0, help="a seeded, op-stratified sample of this size")
    parser.add_argument("--random", type=int, default=0,
                        help="a seeded uniform sample of this size (of the cases --expected-pass selects)")
    parser.add_argument("--expected-pass", action="store_true",
                        help="only cases the x86 expectation file expects to pass (for the other targets)")
    parser.add_argument("--seed", type=int, default=TEST_SEED)
    parser.add_argument("--cases", nargs="*", default=(), help="fnmatch patterns of case names")
    parser.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime column")
    parser.add_argument("--target", choices=TARGETS, default="x86",
                        help="compile for this target and run where its code runs (arm: qemu-aarch64, wasm: "
                             "wasmtime, cuda: a GPU if there is one, else compiled only)")
    parser.add_argument("--json", type=pathlib.Path, default=None,
                        help="default: benchmarks/results/conformance_TARGET.json")
    parser.add_argument("--coverage", type=pathlib.Path, default=None,
                        help="default: COVERAGE.md (x86), benchmarks/results/COVERAGE_TARGET.md (other targets)")
    parser.add_argument("--write-expected", action="store_true", help=f"update {EXPECTED.relative_to(ROOT)}")
    parser.add_argument("--merge", action="store_true",
                        help="update the chosen cases in the existing --json results (and COVERAGE.md from all)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = RESULTS / f"conformance_{args.target}.json"
    if args.coverage is None:
        args.coverage = ROOT / "COVERAGE.md" if args.target == "x86" else RESULTS / f"COVERAGE_{args.target}.md"
    if args.write_expected and args.target != "x86":
        parser.error("--write-expected is for --target x86 (the expectation file is x86's)")

    root = materialize()
    index = load_index(root)
    names = sorted(index)
    if args.cases:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in args.cases)]
    if args.expected_pass:
        expected = json.loads(EXPECTED.read_text())["cases"]
        names = [n for n in names if n not in expected]
    if args.sample:
        names = [n for n in sample(index, args.sample, args.seed) if n in set(names)]
    if args.random:
        names = sorted(random.Random(args.seed).sample(names, min(args.random, len(names))))
    start = time.time()

    def progress(done, total, name, record):
        if not args.quiet:
            extra = f" - {record.get('reason', '')[:120]}" if record["status"] != "pass" else ""
            print(f"[{done}/{total}] {name}: {record['status']}{extra}", flush=True)

    results = run_cases(root, names, workers=args.workers, timeout=args.timeout, with_ort=not args.no_ort,
                        progress=progress, target=args.target)
    seconds = time.time() - start
    import onnxruntime

    if args.merge and args.json.exists():
        previous = json.loads(args.json.read_text())
        merged = dict(previous["cases"])
        merged.update(results)
        results = merged
        names = sorted(results)
        seconds += previous["meta"].get("seconds", 0.0)

    meta = dict(command="python benchmarks/conformance.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                when=time.strftime("%Y-%m-%d"), seconds=seconds, workers=args.workers, ort=onnxruntime.__version__,
                target=args.target)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(meta=meta, summary=summary(results), index={n: index[n] for n in names},
                                         cases=dict(sorted(results.items()))), indent=1) + "\n")
    args.coverage.write_text(coverage_markdown(results, index, meta))
    if args.write_expected:
        write_expected(results)
    print(json.dumps(summary(results)), f"{seconds:.0f} s", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
