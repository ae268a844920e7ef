"""`make demo`: what sparseforge finds in a pruned Transformer and a pruned CNN, and what the export gains.

Every step is a plain `sparseforge` command (printed before it runs), so you can re-run any of them by hand.
Outputs go to build/demo/.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "demo"
CLI = [sys.executable, "-m", "sparseforge.cli"]
MODELS = "examples/models.py"


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n{text}\n{'=' * 100}", flush=True)


def sparseforge(*args: str) -> None:
    shown = " ".join(shlex.quote(a) for a in ("sparseforge", *args))
    print(f"\n$ {shown}", flush=True)
    result = subprocess.run([*CLI, *args], cwd=ROOT, env={**os.environ, "COLUMNS": "150"})
    if result.returncode != 0:
        sys.exit(f"demo step failed (exit {result.returncode}): {shown}")


def main() -> None:
    start = time.time()
    OUT.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(OUT, ROOT)

    banner("1. Transformer encoder: prune half of the feed-forward neurons, then export the smaller model")
    sparseforge("prune", f"{MODELS}:transformer_encoder", "-o", f"{rel}/transformer_pruned.onnx",
                "--method", "channel", "--sparsity", "0.5", "--skip", "*self_attn*", "--skip", "*linear2")
    sparseforge("inspect", f"{rel}/transformer_pruned.onnx")
    sparseforge("export", f"{rel}/transformer_pruned.onnx", "-o", f"{rel}/transformer_small.onnx", "--verify")

    banner("2. The same encoder pruned to 2:4 (N:M) by SparseGPT on calibration samples (random ones here: use your\n"
           "   data) with the held-out accuracy report, and to 90% unstructured: what inspect reports")
    sparseforge("prune", f"{MODELS}:transformer_encoder", "-o", f"{rel}/transformer_2of4.onnx",
                "--method", "sparsegpt", "--pattern", "nm", "--nm", "2:4", "--calibration", "random:32")
    sparseforge("inspect", f"{rel}/transformer_2of4.onnx", "--no-rank")
    sparseforge("prune", f"{MODELS}:transformer_encoder", "-o", f"{rel}/transformer_90.onnx",
                "--method", "magnitude", "--sparsity", "0.9", "--global")
    sparseforge("export", f"{rel}/transformer_90.onnx", "-o", f"{rel}/transformer_90_sparse.onnx",
                "--sparse-storage", "--verify")

    banner("3. MobileNetV2-style CNN: prune half of the coupled channel groups, then export the smaller model")
    sparseforge("prune", f"{MODELS}:small_cnn", "-o", f"{rel}/cnn_pruned.onnx",
                "--method", "group", "--sparsity", "0.5", "--skip", "classifier")
    sparseforge("inspect", f"{rel}/cnn_pruned.onnx")
    sparseforge("export", f"{rel}/cnn_pruned.onnx", "-o", f"{rel}/cnn_small.onnx", "--verify")

    banner("4. Structure beyond zeros: a merged low-rank adapter and a grouped layer become thin / grouped products")
    sparseforge("inspect", f"{MODELS}:structured_mlp")
    sparseforge("export", f"{MODELS}:structured_mlp", "-o", f"{rel}/structured_mlp.onnx", "--verify")
    sparseforge("compile", f"{MODELS}:structured_mlp", "--target", "x86", "-o", f"{rel}/structured_mlp_x86",
                "--threads", "1", "--no-calibrate", "--verify")
    sparseforge("bench", f"{MODELS}:structured_mlp", "--threads", "1", "--rounds", "3")

    banner("5. A Hyena-style model: its long causal convolutions become FFT convolutions")
    sparseforge("inspect", f"{MODELS}:hyena", "--no-rank")
    sparseforge("compile", f"{MODELS}:hyena", "--target", "x86", "-o", f"{rel}/hyena_x86", "--threads", "1",
                "--no-calibrate", "--verify")
    sparseforge("bench", f"{MODELS}:hyena", "--threads", "1", "--rounds", "3", "--repeat", "3", "--no-torch-compile")

    banner("6. Attention heads pruned to zero: ShrinkChannels removes them through the attention pattern")
    sparseforge("inspect", f"{MODELS}:transformer_dead_heads", "--no-rank")
    sparseforge("export", f"{MODELS}:transformer_dead_heads", "-o", f"{rel}/transformer_heads.onnx", "--verify")
    sparseforge("compile", f"{MODELS}:transformer_dead_heads", "--target", "x86", "-o", f"{rel}/heads_x86",
                "--threads", "1", "--no-calibrate", "--verify")
    sparseforge("bench", f"{MODELS}:transformer_dead_heads", "--threads", "1", "--rounds", "3", "--no-torch-compile")

    banner("7. The 90%-sparse encoder of step 2 compiled for this CPU: sparse kernels where its performance model\n"
           "   (fitted once from a grid of kernel timings, then cached) predicts them faster; bench against ONNX\n"
           "   Runtime; an HTML report of every layer, weight and pass")
    sparseforge("compile", f"{rel}/transformer_90.onnx", "--target", "x86", "-o", f"{rel}/transformer_90_x86",
                "--threads", "1", "--verify", "--report", f"{rel}/transformer_90_report.html")
    sparseforge("bench", f"{rel}/transformer_90.onnx", "--threads", "1", "--rounds", "3")
    sparseforge("explain", f"{rel}/transformer_90.onnx", "encoder.layers.0.self_attn.in_proj", "--threads", "1")
    print(f"\nOpen {rel}/transformer_90_report.html in a browser (it needs nothing else).", flush=True)

    banner(f"Done in {time.time() - start:.0f} s. Files are in {rel}/; every exported model runs in ONNX Runtime.")


if __name__ == "__main__":
    main()
