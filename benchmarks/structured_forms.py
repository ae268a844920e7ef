"""Structured forms against the fastest dense peer (issue 10): one layer per form, side by side in one process.

Each case is a one-layer ONNX model whose weight has the structure exactly. Interleaved rounds (median, process
pinned to ``--threads`` CPUs, ``sparseforge.driver.bench``) time ONNX Runtime, PyTorch (the same product on the
same weight), OpenVINO (when installed), sparseforge dense (the control: the weight compiled as it is) and sparseforge (the
structured rewrite), reported against the fastest dense peer.

* ``low-rank``: ``MatMul(x[M, 4096], W[4096, 4096])`` with ``rank(W) = 512`` (n/8), ``M`` in 1 and 128.
* ``block-diagonal``: the same shape, ``W`` block-diagonal with 8 blocks of 512 x 512, rows and columns shuffled.
* ``monarch``: the same shape, ``W`` a Monarch product with 64 blocks of 64 x 64 in each factor.
* ``fft-conv``: a Hyena-shaped long convolution, ``Conv(x[1, 256, 4096], W[256, 1, 4096])``, depthwise and causal
  (``--m`` does not apply). Peers: ONNX Runtime's Conv, PyTorch's ``conv1d``, and PyTorch computing the same
  convolution with ``torch.fft.rfft`` the way Hyena's ``fftconv`` does (the kernel's spectrum every call), plus the
  same with the kernel spectrum precomputed (``pytorch-rfft-cached``, shown, not a Hyena peer).

    .venv/bin/python benchmarks/structured_forms.py                     # every case, 1 and 2 threads
    .venv/bin/python benchmarks/structured_forms.py --threads 1 --m 128 --json benchmarks/results/structured.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[1]


def low_rank_model(m: int, n: int = 4096, rank: int = 512, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n, rank)) @ rng.standard_normal((rank, n)) / np.sqrt(rank * n)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "low_rank",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def block_diagonal_model(m: int, n: int = 4096, blocks: int = 8, seed: int = 0) -> onnx.ModelProto:
    """``W`` block-diagonal with ``blocks`` equal blocks, rows and columns shuffled (a grouped layer)."""
    rng = np.random.default_rng(seed)
    size = n // blocks
    w = np.zeros((n, n), np.float32)
    for b in range(blocks):
        w[b * size:(b + 1) * size, b * size:(b + 1) * size] = rng.standard_normal((size, size)) / np.sqrt(size)
    w = w[rng.permutation(n)][:, rng.permutation(n)]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "block_diagonal",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(np.ascontiguousarray(w.T), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def monarch_model(m: int, n: int = 4096, blocks: int = 64, seed: int = 0) -> onnx.ModelProto:
    """``W`` a Monarch product of ``blocks`` blocks of ``n/blocks`` squared in each factor (Monarch's ``P L P^T R``)."""
    from sparseforge.ir.forms.monarch import Monarch

    rng = np.random.default_rng(seed)
    size = n // blocks
    left = rng.standard_normal((blocks, size, blocks)) / np.sqrt(blocks)
    right = rng.standard_normal((blocks, blocks, size)) / np.sqrt(size)
    w = Monarch(right, left, "gf", 0.0).dense().astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "monarch",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(np.ascontiguousarray(w.T), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def fft_conv_model(m: int = 1, channels: int = 256, length: int = 4096, taps: int = 4096, seed: int = 0
                   ) -> onnx.ModelProto:
    """A depthwise causal ``Conv1d`` with ``taps`` taps over ``length`` samples (Hyena's long convolution)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((channels, 1, taps)) * np.exp(-np.arange(taps) / 512.0) / 20).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="long_conv", group=channels, pads=[taps - 1, 0])
    graph = helper.make_graph([node], "fft_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, length])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, length])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _openvino(proto, feeds, threads) -> dict:
    """``{"openvino": engine}`` when OpenVINO is installed, else ``{}`` (a note is printed)."""
    from sparseforge.driver import bench

    engine = bench.openvino_engine(proto, feeds, threads)
    if engine is None:
        print("openvino not installed: skipped (pip install openvino)", file=sys.stderr)
        return {}
    return {"openvino": engine}


def bench_fft_conv(proto: onnx.ModelProto, threads: int, rounds: int, repeat: int) -> dict:
    """ONNX Runtime's Conv, PyTorch ``conv1d`` and ``torch.fft.rfft`` (Hyena's ``fftconv``), sparseforge's FftConv;
    medians in ms. The direct dense control is not compiled (a direct 4096-tap convolution takes seconds)."""
    import torch

    import onnx_ir as ir
    from sparseforge.driver import bench
    from sparseforge.driver.compile import compile_model
    from sparseforge.ir.forms.fft_conv import fft_length
    from sparseforge.runtime.compare import random_inputs, session

    pinned = bench.pin_threads(threads)
    feeds = random_inputs(session(proto), 0)
    w = torch.from_numpy(numpy_helper.to_array(proto.graph.initializer[0]).copy())  # [C, 1, L]
    x = torch.from_numpy(feeds["x"].copy())
    channels, length, taps = w.shape[0], x.shape[-1], w.shape[-1]
    n = fft_length(length + taps - 1)
    flipped = torch.flip(w[:, 0, :], dims=[-1])  # ONNX Conv correlates; a convolution takes the flipped kernel
    cached = torch.fft.rfft(flipped, n=n)

    class Conv(torch.nn.Module):
        def forward(self, a):
            return torch.nn.functional.conv1d(a, w, padding=taps - 1, groups=channels)[..., :length]

    class HyenaFFT(torch.nn.Module):  # hyena-dna's fftconv: the kernel spectrum is computed every call
        def forward(self, a):
            k_f = torch.fft.rfft(flipped, n=n) / n
            u_f = torch.fft.rfft(a, n=n)
            return torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :length]

    class CachedFFT(torch.nn.Module):
        def forward(self, a):
            return torch.fft.irfft(torch.fft.rfft(a, n=n) * cached, n=n)[..., :length]

    structured = compile_model(ir.from_proto(proto), None, threads=threads)
    reference = session(proto, threads=threads).run(None, feeds)[0]
    for module in (Conv(), HyenaFFT(), CachedFFT()):
        with torch.inference_mode():
            got = module(x).numpy()
        assert np.allclose(got, reference, atol=1e-3 * np.abs(reference).max()), type(module).__name__
    engines = {"onnxruntime": bench.ort_engine(proto, feeds, threads),
               **_openvino(proto, feeds, threads),
               "pytorch-conv1d": bench.torch_engine(Conv(), (x,), threads),
               "pytorch-rfft-hyena": bench.torch_engine(HyenaFFT(), (x,), threads),
               "pytorch-rfft-cached": bench.torch_engine(CachedFFT(), (x,), threads),
               "sparseforge": bench.artifact_engine(structured.executable, feeds, ["x"], threads)}
    results = {r.engine: r.median_ms for r in bench.time_engines(engines, rounds=rounds, repeat=repeat,
                                                                  max_seconds=300)}
    ours = results["sparseforge"]
    return dict(threads=threads, pinned=pinned, ms={k: round(v, 3) for k, v in results.items()},
                speedup_vs_onnxruntime=round(results["onnxruntime"] / ours, 1),
                speedup_vs_pytorch_rfft_hyena=round(results["pytorch-rfft-hyena"] / ours, 2),
                speedup_vs_pytorch_rfft_cached=round(results["pytorch-rfft-cached"] / ours, 2),
                speedup_vs_best_dense_peer=round(min(v for k, v in results.items()
                                                     if k in ("onnxruntime", "openvino", "pytorch-conv1d")) / ours, 1),
                structured=structured.manifest["structured"], kernels=structured.manifest["kernels"])


CASES = {"low-rank": low_rank_model, "block-diagonal": block_diagonal_model, "monarch": monarch_model,
         "fft-conv": fft_conv_model}


def bench_case(proto: onnx.ModelProto, threads: int, rounds: int, repeat: int) -> dict:
    """ONNX Runtime, PyTorch (the same product, ``torch.from_numpy`` weights), sparseforge dense and structured,
    interleaved in one process pinned to ``threads`` CPUs; medians in ms and speedups against the best peer."""
    import torch

    import onnx_ir as ir
    from sparseforge.driver import bench
    from sparseforge.driver.compile import compile_model
    from sparseforge.runtime.compare import random_inputs, session

    pinned = bench.pin_threads(threads)
    feeds = random_inputs(session(proto), 0)
    weight = torch.from_numpy(numpy_helper.to_array(proto.graph.initializer[0]).copy())
    x = torch.from_numpy(feeds["x"].copy())

    class Layer(torch.nn.Module):
        def forward(self, a):
            return a @ weight

    dense = compile_model(ir.from_proto(proto), None, threads=threads, dense=True)
    structured = compile_model(ir.from_proto(proto), None, threads=threads)
    engines = {"onnxruntime": bench.ort_engine(proto, feeds, threads),
               "pytorch": bench.torch_engine(Layer().eval(), (x,), threads),
               **_openvino(proto, feeds, threads),
               "sparseforge-dense": bench.artifact_engine(dense.executable, feeds, ["x"], threads),
               "sparseforge": bench.artifact_engine(structured.executable, feeds, ["x"], threads)}
    results = {r.engine: r.median_ms for r in bench.time_engines(engines, rounds=rounds, repeat=repeat)}
    best = min(v for k, v in results.items() if k in bench.DENSE_PEERS)
    return dict(threads=threads, pinned=pinned, ms={k: round(v, 4) for k, v in results.items()},
                speedup_vs_best_dense_peer=round(best / results["sparseforge"], 2),
                passes=structured.manifest["passes"],
                layers=[(d["node"], list(d["shape"])) for d in structured.manifest["decisions"]])


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--m", type=int, nargs="*", default=[1, 128], help="rows of the activation")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    rows = []
    for case in args.cases:
        for m in ([1] if case == "fft-conv" else args.m):
            proto = CASES[case](m)
            for threads in args.threads:
                run = bench_fft_conv if case == "fft-conv" else bench_case
                row = dict(case=case, m=m, **run(proto, threads, args.rounds, args.repeat))
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
