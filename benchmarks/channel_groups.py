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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,small_resnet,mobilenetv2")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    import models

    from sparseforge import api

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            module, inputs = getattr(models, name)()
            dense = Path(tmp) / f"{name}.onnx"
            api.export(module, dense, example_inputs=inputs)
            base = api.inspect(str(dense), with_rank=False)
            params0, nz0 = base.stats.parameters, nonzeros(base.model)
            for method in ("channel", "group"):
                pruned = Path(tmp) / f"{name}-{method}.onnx"
                result = api.prune(str(dense), pruned, api.prune_config(method, args.sparsity))
                zeroed = nz0 - nonzeros(api.inspect(str(pruned), with_rank=False).model)
                small = Path(tmp) / f"{name}-{method}-small.onnx"
                exported = api.export(str(pruned), small, verify=True)
                removed = params0 - exported.after.parameters
                row = dict(model=name, method=method, parameters=params0, zeroed=zeroed, removed=removed,
                           removed_fraction=removed / zeroed if zeroed else None,
                           output_deviation=result.output_deviation.max_rel)
                rows.append(row)
                print(f"{name:14s} {method:8s} zeroed {zeroed:9,d}  export removed {removed:9,d} "
                      f"({100 * removed / max(zeroed, 1):5.1f}%)  output deviation {row['output_deviation']:.3f}",
                      flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
