"""Cold compile time and decision quality of the cost model (issue 11): this checkout against another revision.

For each model, each revision compiles it for x86 in a fresh process with an empty cache (``SPARSEFORGE_CACHE`` in
a new folder: the first compile on a new machine), with only the performance model's fits of that run kept (a new
model on a machine where sparseforge has compiled before), and again with the whole cache it left (the second
compile of the same model). The
artifacts are then timed side by side in one process pinned to ``--threads`` CPUs with ONNX Runtime (interleaved
rounds), so a revision whose decisions are worse shows up as a slower artifact.

    .venv/bin/python benchmarks/cold_compile.py --baseline 0bf551f --models mobilenetv2-90,bert4-90
    .venv/bin/python benchmarks/cold_compile.py --json benchmarks/results/cold_compile.json

``--baseline REV`` checks REV out into a git worktree and runs it with this checkout's virtual environment
(``PYTHONPATH`` pointing at its ``src``). Models: ``mobilenetv2-90`` (MobileNetV2, every 1x1 conv pruned to 90%),
``bert4-90`` (4-layer BERT-shaped encoder, every Linear pruned to 90%), ``small_cnn-90`` (the bundled CNN),
``resnet18-90`` / ``mobilenetv3_small-90`` / ``efficientnet_b0-90`` (the model suite's ``90`` variants).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

COMPILE = """
import json, sys, time
from sparseforge.driver.compile import compile_model
start = time.perf_counter()
result = compile_model(sys.argv[1], sys.argv[2], target="x86", threads=int(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - start,
                  "decisions": [[d["node"], d.get("kernel", d["fmt"]), d["reason"]] for d in result.decisions]}))
"""


def export_model(name: str, folder: Path) -> Path:
    """The model as an ONNX file (PyTorch export through sparseforge's frontend)."""
    import onnx_ir as ir

    import models
    from model_suite import build_model, prune_module
    from sparseforge.ir.frontend import load

    if name == "mobilenetv2-90":
        module, inputs = models.mobilenetv2()
        prune_module(module, {"conv1x1"}, 0.9)
    elif name == "bert4-90":
        module, inputs = models.bert_encoder(layers=4)
        prune_module(module, {"linear"}, 0.9)
    elif name == "small_cnn-90":
        module, inputs = models.small_cnn()
        prune_module(module, {"conv1x1", "linear"}, 0.9)
    elif name in ("resnet18-90", "mobilenetv3_small-90", "efficientnet_b0-90"):
        module, inputs = build_model(name.removesuffix("-90"), "90")
    else:
        raise SystemExit(f"unknown model {name}")
    path = folder / f"{name}.onnx"
    ir.save(load(module, inputs), path)
    return path


def compile_in_fresh_process(src: Path, model: Path, outdir: Path, cache: Path, threads: int) -> dict:
    env = dict(os.environ, SPARSEFORGE_CACHE=str(cache), PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-c", COMPILE, str(model), str(outdir), str(threads)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"compile failed ({src}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mobilenetv2-90,bert4-90")
    parser.add_argument("--baseline", default=None, help="git revision to compare with")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cold_compile_"))
    revisions = {"this": ROOT / "src"}
    if args.baseline:
        tree = work / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline],
                       check=True, capture_output=True)
        revisions[args.baseline] = tree / "src"
    rows = []
    try:
        for name in args.models.split(","):
            model = export_model(name, work)
            row = {"model": name, "revisions": {}}
            for label, src in revisions.items():
                cache = work / f"cache-{label}-{name}"
                cold = compile_in_fresh_process(src, model, work / f"{label}-{name}-cold", cache, args.threads)
                fitted_s = None
                perf_files = list((cache / "calibration").glob("perf-*.json"))
                if perf_files:  # a new model on a machine whose performance model is fitted: only the fits kept
                    fitted_cache = work / f"cache-{label}-{name}-fitted"
                    (fitted_cache / "calibration").mkdir(parents=True)
                    for f in perf_files:
                        (fitted_cache / "calibration" / f.name).write_bytes(f.read_bytes())
                    fitted = compile_in_fresh_process(src, model, work / f"{label}-{name}-fitted", fitted_cache,
                                                      args.threads)
                    fitted_s = round(fitted["seconds"], 1)
                warm = compile_in_fresh_process(src, model, work / f"{label}-{name}", cache, args.threads)
                row["revisions"][label] = {"cold_s": round(cold["seconds"], 1), "fitted_s": fitted_s,
                                           "warm_s": round(warm["seconds"], 1),
                                           "sparse_layers": sum(1 for _, k, _ in warm["decisions"] if k != "dense"),
                                           "layers": len(warm["decisions"]), "decisions": warm["decisions"]}
                print(f"{name} {label}: cold {cold['seconds']:.1f} s, performance model fitted {fitted_s} s, "
                      f"warm {warm['seconds']:.1f} s", flush=True)
            row["latency_ms"] = time_artifacts(model, {label: work / f"{label}-{name}" for label in revisions},
                                               args.threads, args.rounds, args.repeat)
            print(f"{name}: {row['latency_ms']}", flush=True)
            rows.append(row)
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                           check=False, capture_output=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


def time_artifacts(model: Path, artifacts: dict[str, Path], threads: int, rounds: int, repeat: int) -> dict:
    """Median ms of ONNX Runtime and every artifact, interleaved in this process pinned to ``threads`` CPUs."""
    import onnx

    from sparseforge.driver import bench
    from sparseforge.runtime import artifact
    from sparseforge.runtime.compare import random_inputs, session

    bench.pin_threads(threads)
    proto = onnx.load(model)
    feeds = random_inputs(session(proto), 0)
    engines = {"onnxruntime": bench.ort_engine(proto, feeds, threads)}
    for label, outdir in artifacts.items():
        loaded = artifact.load(outdir, threads=threads)
        prepared = loaded.prepare(feeds)
        engines[f"sparseforge ({label})"] = lambda a=loaded, p=prepared: a.run_prepared(p)
    results = bench.time_engines(engines, rounds=rounds, repeat=repeat)
    return {r.engine: round(r.median_ms, 3) for r in results}


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.0f} s")
