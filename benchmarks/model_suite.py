"""Model suite: whole models, side by side in one process (ONNX Runtime, PyTorch eager, sparseforge dense/sparse).

Models (examples/models.py):
* ``bert``: 12-layer BERT-base-shaped encoder, seq 128, batch 1; variants dense and every Linear weight
  magnitude-pruned to 90% (per layer);
* ``mobilenetv2``: MobileNetV2 at 224x224, batch 1; variants dense and every 1x1 convolution pruned to 90%;
* ``resnet18``: ResNet-18 at 224x224, batch 1; variants dense and every convolution (7x7, 3x3, 1x1, strided ones
  included) pruned to 90%;
* ``gpt2``: GPT-2 (124M, Hugging Face's computation defined in examples/models.py), seq 128, batch 1; variants dense
  and every block Linear (fused QKV, attention output, MLP) pruned to 90% (the tied embedding / LM head stays dense);
* ``mobilenetv3_small`` / ``efficientnet_b0``: torchvision's architectures at 224x224, batch 1; variants dense and
  every 1x1 convolution (expansions, projections, squeeze-and-excitation) pruned to 90%.

For each (model, variant, threads) the process is pinned to that many CPUs and every engine runs the same inputs
in interleaved rounds (median of rounds of median-of-repeats). Ratios are speedups over the fastest dense peer
(ONNX Runtime or PyTorch). The sparseforge builds are compiled in this process; compile times are reported.

usage: python benchmarks/model_suite.py [--models bert,mobilenetv2] [--threads 1,2] [--rounds 5] [--repeat 5]
                                        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def prune_module(module, kinds: set[str], sparsity: float) -> int:
    """Magnitude-prune (per layer) the weights of Linear, 1x1 Conv2d and/or any Conv2d ("conv") layers in place;
    returns the layer count."""
    import torch

    count = 0
    with torch.no_grad():
        for layer in module.modules():
            is_linear = isinstance(layer, torch.nn.Linear) or (
                isinstance(layer, torch.nn.MultiheadAttention) and layer.in_proj_weight is not None)
            is_1x1 = isinstance(layer, torch.nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1
            is_conv = isinstance(layer, torch.nn.Conv2d)
            if not ((("linear" in kinds) and is_linear) or (("conv1x1" in kinds) and is_1x1)
                    or (("conv" in kinds) and is_conv)):
                continue
            weights = [layer.in_proj_weight] if isinstance(layer, torch.nn.MultiheadAttention) else [layer.weight]
            for w in weights:
                k = int(round(sparsity * w.numel()))
                if k:
                    threshold = w.abs().flatten().kthvalue(k).values
                    w.mul_((w.abs() > threshold).to(w.dtype))
                count += 1
    return count


def build_model(name: str, variant: str):
    import models

    if name == "bert":
        module, inputs = models.bert_encoder()
        if variant == "90":
            prune_module(module, {"linear"}, 0.9)
    elif name == "mobilenetv2":
        module, inputs = models.mobilenetv2()
        if variant == "90":
            prune_module(module, {"conv1x1"}, 0.9)
    elif name == "resnet18":
        module, inputs = models.resnet18()
        if variant == "90":
            prune_module(module, {"conv"}, 0.9)
    elif name == "gpt2":
        module, inputs = models.gpt2()
        if variant == "90":
            prune_module(module, {"linear"}, 0.9)
    elif name in ("mobilenetv3_small", "efficientnet_b0"):
        module, inputs = getattr(models, name)()
        if variant == "90":
            prune_module(module, {"conv1x1"}, 0.9)
    else:
        raise SystemExit(f"unknown model {name}")
    return module, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert,mobilenetv2")
    parser.add_argument("--variants", default="dense,90")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    from sparseforge.driver.bench import bench_model, pin_threads

    all_cpus = sorted(os.sched_getaffinity(0))
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        os.sched_setaffinity(0, set(all_cpus))
        pin_threads(threads)
        for name in args.models.split(","):
            for variant in args.variants.split(","):
                module, inputs = build_model(name, variant)
                start = time.time()
                result = bench_model(module, example_inputs=inputs, threads=threads, rounds=args.rounds,
                                     repeat=args.repeat, sparse=variant != "dense")
                result.update(model=name, variant=variant, wall_seconds=round(time.time() - start, 1))
                rows.append(result)
                summary = ", ".join(f"{r['engine']} {r['median_ms']:.2f} ms "
                                    f"({r['speedup_vs_best_dense_peer']:.2f}x)" for r in result["results"])
                print(f"{name:12s} {variant:5s} {threads}t: {summary}; sparse layers {result['sparse_layers']}; "
                      f"compile {result['compile_seconds']}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
