"""``compress --max-output-error`` against uniform magnitude pruning at the same held-out error, on x86.

For each model of ``calibrated_pruning.py`` (trained here): uniform magnitude pruning of every layer at
``--sparsity`` gives a test-set logits error E; ``compress`` gets E as its budget (measured on 512 training
samples); both are benchmarked with ``sparseforge bench`` (ONNX Runtime, OpenVINO, sparseforge dense and sparse,
1 thread, interleaved rounds) and their test-set errors and accuracies are reported. A larger measured speedup at
the same (or lower) error is the goal.

usage: python benchmarks/compress_vs_uniform.py [--models digits,sequence] [--sparsity 0.7] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import calibrated_pruning as cp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,sequence")
    parser.add_argument("--sparsity", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    import torch

    from sparseforge import api

    builders = {"digits": cp.digits_model, "sequence": cp.sequence_model}
    batch = 16
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.models.split(","):
            model, (x_train, _), (x_test, y_test), _ = builders[name]()
            dense = tmp / f"{name}.onnx"
            api.export(model, dense, example_inputs=(torch.from_numpy(x_train[:batch]),))
            n = len(x_test) // batch * batch
            dense_acc, _, ref = cp.evaluate(dense, x_test[:n], y_test[:n], None, batch)
            input_name = api.inspect(str(dense)).model.graph.inputs[0].name
            calib = tmp / "calib.npz"
            np.savez(calib, **{input_name: x_train[:512]})
            uniform = tmp / f"{name}-uniform.onnx"
            api.prune(str(dense), uniform, api.prune_config("magnitude", args.sparsity))
            u_acc, u_err, _ = cp.evaluate(uniform, x_test[:n], y_test[:n], ref, batch)
            compressed = tmp / f"{name}-compress.onnx"
            result = api.compress(str(dense), compressed, calibration=str(calib), threads=args.threads,
                                  max_output_error=u_err, holdout=0.0)
            c_acc, c_err, _ = cp.evaluate(compressed, x_test[:n], y_test[:n], ref, batch)
            levels = [r["level"] for r in result.report["layers"]]
            row = dict(model=name, sparsity=args.sparsity, dense_accuracy=dense_acc,
                       uniform=dict(accuracy=u_acc, error=u_err), compress=dict(
                           accuracy=c_acc, error=c_err, levels=levels,
                           predicted_speedup=result.report["predicted_speedup"]))
            for key, path in (("uniform", uniform), ("compress", compressed)):
                bench = api.bench(str(path), threads=args.threads, rounds=5, repeat=10)
                engines = {r["engine"]: r for r in bench["results"]}
                row[key]["bench"] = {e: dict(ms=r["median_ms"], vs_best_peer=r["speedup_vs_best_dense_peer"])
                                     for e, r in engines.items()}
                row[key]["sparse_layers"] = bench.get("sparse_layers")
            rows.append(row)
            for key in ("uniform", "compress"):
                r = row[key]
                sf = r["bench"].get("sparseforge-sparse", {})
                print(f"{name:9s} {key:9s} test accuracy {100 * r['accuracy']:6.2f}% (dense {100 * dense_acc:.2f}%) "
                      f"logits error {r['error']:.4f}  sparseforge {sf.get('ms', float('nan')):.3f} ms = "
                      f"{sf.get('vs_best_peer', float('nan')):.2f}x the best dense peer; sparse layers "
                      f"{r.get('sparse_layers')}", flush=True)
            print(f"          compress levels: {', '.join(levels)}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
