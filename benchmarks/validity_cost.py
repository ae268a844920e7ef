"""What checking validity costs `export`: the up-front input check and the written-file check (ONNX checker with
full shape inference + an ONNX Runtime session) as a fraction of the whole `export` call, on the bundled examples.

    python benchmarks/validity_cost.py [--repeat 5]

Each example is exported from an ONNX file (the PyTorch export is done once, outside the timing); the export and
the two checks are timed in the same process, median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from sparseforge import api  # noqa: E402
from sparseforge.ir import validate  # noqa: E402
from sparseforge.ir.frontend import load  # noqa: E402
from sparseforge.passes.rewrites.prune import PruneConfig  # noqa: E402


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    examples = Path(__file__).resolve().parents[1] / "examples" / "models.py"
    with tempfile.TemporaryDirectory() as tmp:
        for factory in ("small_cnn", "transformer_encoder"):
            src = Path(tmp) / f"{factory}.onnx"
            api.prune(f"{examples}:{factory}", src, PruneConfig("channel", 0.5))  # one PyTorch export, outside timing
            out = Path(tmp) / f"{factory}.out.onnx"
            export_s = _median(lambda: api.export(src, out), args.repeat)
            proto = onnx.load(src)
            input_s = _median(lambda: (validate.model_tensor_problem(proto), validate.checker_problem(proto)),
                              args.repeat)
            output_s = _median(lambda: validate.written_file_problem(out), args.repeat)
            load_s = _median(lambda: load(src), args.repeat)
            share = (input_s + output_s) / export_s
            print(f"{factory:20s} export {export_s * 1e3:7.1f} ms (load {load_s * 1e3:6.1f} ms); input check "
                  f"{input_s * 1e3:6.1f} ms, output check {output_s * 1e3:6.1f} ms: {share:.1%} of export "
                  f"({onnx.load(src).ByteSize() / 1e6:.2f} MB model)")


if __name__ == "__main__":
    main()
