"""A/B of the block-diagonal rewrite: one product per block against one batched product over equal blocks, with
ONNX Runtime, interleaved in one process. Usage: ``benchmarks/block_diagonal_ab.py THREADS M``."""
import sys; sys.path.insert(0, "benchmarks")
import onnx_ir as ir
from structured_forms import block_diagonal_model
from sparseforge.driver import bench
from sparseforge.driver.compile import compile_model
from sparseforge.runtime.compare import random_inputs, session
from sparseforge.passes.rewrites import block_diagonal as bd
threads = int(sys.argv[1]); m = int(sys.argv[2])
bench.pin_threads(threads)
proto = block_diagonal_model(m)
feeds = random_inputs(session(proto), 0)
engines = {"onnxruntime": bench.ort_engine(proto, feeds, threads)}
for flag in (False, True):
    bd.BATCHED = flag
    art = compile_model(ir.from_proto(proto), None, threads=threads)
    engines["batched" if flag else "per-block"] = bench.artifact_engine(art.executable, feeds, ["x"], threads)
res = {r.engine: r.median_ms for r in bench.time_engines(engines, rounds=7, repeat=5)}
print(threads, m, {k: round(v, 3) for k, v in res.items()})
