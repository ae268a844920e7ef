"""WebAssembly suite: sparseforge's model.wasm (dense and sparse) against ONNX Runtime Web's WebAssembly backend.

All three run in one Node.js process, single-threaded (ORT Web ``numThreads = 1``; our module has no threads),
interleaved rounds, median of rounds of median-of-repeats; ratios against ONNX Runtime Web. ONNX Runtime Web gets
the canonicalized dense model (constants and BatchNorm folded). Needs Node.js and ``npm install`` in
``benchmarks/node`` (onnxruntime-web from the npm registry).

usage: python benchmarks/wasm_suite.py [--models small_cnn,transformer_encoder,mobilenetv2] [--rounds 5]
                                       [--repeat 5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "benchmarks" / "node"
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,transformer_encoder,mobilenetv2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    if not (NODE_DIR / "node_modules" / "onnxruntime-web").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)

    import numpy as np
    import onnx_ir as ir

    import models
    import sparseforge
    from model_suite import prune_module
    from sparseforge.driver.compile import compile_model
    from sparseforge.ir.frontend import load
    from sparseforge.ir.save import save_model
    from sparseforge.passes import pipelines
    from sparseforge.passes.infra import Pipeline

    rows = []
    for name in args.models.split(","):
        module, inputs = getattr(models, name)()
        prune_module(module, {"linear", "conv1x1"}, 0.9)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            model = load(module, inputs)
            Pipeline(pipelines.canonicalize())(model)
            save_model(model, tmp / "dense.onnx")
            plan = {"rounds": args.rounds, "repeat": args.repeat, "engines": [], "inputs": []}
            facts = {}
            for mode, dense in (("dense", True), ("sparse", False)):
                out = tmp / mode
                result = compile_model(tmp / "dense.onnx", out, target="wasm", dense=dense)
                facts[mode] = {**result.manifest["wasm"],
                               "sparse_layers": sum(d["fmt"] != "dense" for d in result.decisions)}
                plan["engines"].append({"engine": f"sparseforge-{mode}", "kind": "sparseforge", "path": str(out)})
                if not plan["inputs"]:
                    rng = np.random.default_rng(0)
                    for spec in result.manifest["inputs"]:
                        path = tmp / f"{spec['name']}.bin"
                        path.write_bytes(rng.standard_normal(spec["shape"]).astype(np.float32).tobytes())
                        plan["inputs"].append({**spec, "file": str(path)})
            plan["engines"].insert(0, {"engine": "onnxruntime-web", "kind": "onnxruntime-web",
                                       "path": str(tmp / "dense.onnx")})
            (tmp / "plan.json").write_text(json.dumps(plan))
            run = subprocess.run(["node", str(NODE_DIR / "bench_wasm.mjs"), str(tmp / "plan.json")], cwd=NODE_DIR,
                                 capture_output=True, text=True, timeout=3600)
            if run.returncode != 0:
                raise SystemExit(run.stderr[-2000:])
            results = json.loads(run.stdout.strip().splitlines()[-1])["results"]
        base = next(r["median_ms"] for r in results if r["engine"] == "onnxruntime-web")
        for r in results:
            r["speedup_vs_onnxruntime_web"] = base / r["median_ms"]
        rows.append({"model": name, "results": results, "wasm": facts})
        print(f"{name:20s} " + ", ".join(f"{r['engine']} {r['median_ms']:.2f} ms ({r['speedup_vs_onnxruntime_web']:.2f}x)"
                                          for r in results)
              + f"; module {facts['dense']['wasm_bytes'] / 1e6:.1f} MB dense / {facts['sparse']['wasm_bytes'] / 1e6:.1f} MB "
              f"sparse, arena {facts['dense']['arena_bytes'] / 1e6:.1f} MB, sparse layers {facts['sparse']['sparse_layers']}",
              flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
