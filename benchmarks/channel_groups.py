"""Channel pruning per layer (``--method channel``) against coupled channel groups (``--method group``, DepGraph
on the channel graph): how much of what is pruned ``export`` then removes exactly.

For each model and method at 50%: the weights pruning zeroed (parameters), the parameters ``export`` removed, their
ratio, and the output deviation on random inputs (relative to the output magnitude).

usage: python benchmarks/channel_groups.py [--models small_cnn,small_resnet,mobilenetv2] [--sparsity 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def nonzeros(model) -> int:
    from sparseforge.ir.weights import weight_views

    return int(sum(np.count_nonzero(v.matrix()) for v in weight_views(model.graph)))


def zero_rows(model) -> dict[str, int]:
    """Output channels (rows) of every ungrouped weight layer that are entirely zero, by layer (depthwise layers
    lose their channels with their producers and are not counted)."""
    from sparseforge.ir.weights import weight_views

    return {v.name: int((~v.matrix().any(axis=1)).sum()) for v in weight_views(model.graph) if v.groups == 1}


def rows(model) -> dict[str, int]:
    from sparseforge.ir.weights import weight_views

    return {v.name: int(v.matrix().shape[0]) for v in weight_views(model.graph) if v.groups == 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,small_resnet,mobilenetv2")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    import models

    from sparseforge import api

    out_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            module, inputs = getattr(models, name)()
            dense = Path(tmp) / f"{name}.onnx"
            api.export(module, dense, example_inputs=inputs)
            base = api.inspect(str(dense), with_rank=False)
            params0, nz0 = base.stats.parameters, nonzeros(base.model)
            rows0, dead0 = rows(base.model), zero_rows(base.model)
            for method in ("channel", "group"):
                pruned = Path(tmp) / f"{name}-{method}.onnx"
                result = api.prune(str(dense), pruned, api.prune_config(method, args.sparsity))
                pruned_model = api.inspect(str(pruned), with_rank=False).model
                zeroed = nz0 - nonzeros(pruned_model)
                dead = zero_rows(pruned_model)
                pruned_rows = sum(dead[k] - dead0.get(k, 0) for k in dead)
                small = Path(tmp) / f"{name}-{method}-small.onnx"
                exported = api.export(str(pruned), small, verify=True)
                after = rows(api.inspect(str(small), with_rank=False).model)
                removed_rows = sum(rows0[k] - after.get(k, rows0[k]) for k in rows0)
                removed = params0 - exported.after.parameters
                row = dict(model=name, method=method, parameters=params0, zeroed_weights=zeroed,
                           removed_parameters=removed, pruned_channels=pruned_rows, removed_channels=removed_rows,
                           output_deviation=result.output_deviation.max_rel)
                out_rows.append(row)
                print(f"{name:14s} {method:8s} channels zeroed {pruned_rows:6,d}, removed by export "
                      f"{removed_rows:6,d} ({100 * removed_rows / max(pruned_rows, 1):5.1f}%); weights zeroed "
                      f"{zeroed:9,d}, parameters removed {removed:9,d}; output deviation "
                      f"{row['output_deviation']:.3f}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out_rows, indent=1))


if __name__ == "__main__":
    main()
