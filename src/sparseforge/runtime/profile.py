"""Measured time per kernel and per layer of a compiled artifact, and where the time goes.

One inference is profiled with a VM instrument around every call (:meth:`~sparseforge.codegen.vm.VMRunner.profile`,
median of ``repeats``); every kernel is put in a category: the layer's own kernel for sparse and structured layers
(the manifest names the kernel of each such node), TVM's dense convolutions and products, layout transforms, VM
runtime builtins, and the rest. The latency without the instrument is measured too (median of ``repeats`` runs):
the instrument adds a Python callback per call, so per-kernel times add up to a bit more than the latency.

Dense layers are fused by TVM into functions that do not carry node names, so their time is reported per category
and per fused function, not per ONNX node.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

SPARSE_FORMATS = frozenset({"csr", "bsr", "nm"})
CATEGORIES = ("sparse layers", "structured layers", "dense conv / matmul", "layout transforms", "VM runtime",
              "other (elementwise, pooling, reshapes...)")
_DENSE_MARKERS = ("conv2d", "matmul", "dense", "nchwc", "batch_matmul", "linear")


@dataclasses.dataclass
class KernelTime:
    kernel: str
    category: str
    seconds: float
    calls: int
    node: str | None = None


@dataclasses.dataclass
class Profile:
    """``latency_s``: median seconds per inference (no instrument); ``kernels``: every kernel called, slowest
    first; ``threads``: the thread count it ran with."""

    latency_s: float
    kernels: list[KernelTime]
    threads: int | None

    @property
    def by_category(self) -> dict[str, float]:
        out = {c: 0.0 for c in CATEGORIES}
        for k in self.kernels:
            out[k.category] += k.seconds
        return {c: s for c, s in out.items() if s > 0}

    @property
    def by_node(self) -> dict[str, float]:
        """Measured seconds of each layer that has its own kernel (sparse and structured layers)."""
        out: dict[str, float] = {}
        for k in self.kernels:
            if k.node is not None:
                out[k.node] = out.get(k.node, 0.0) + k.seconds
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"latency_s": self.latency_s, "threads": self.threads, "by_category": self.by_category,
                "by_node": self.by_node, "kernels": [dataclasses.asdict(k) for k in self.kernels]}


def category(kernel: str, record: Mapping[str, Any] | None) -> str:
    """The category of a kernel (``record``: the manifest's kernel record when the kernel is a layer's own)."""
    if record is not None and record.get("fmt") == "dense":  # a dense layer with its own kernel (a fused pair)
        return "dense conv / matmul"
    if record is not None:
        return "sparse layers" if record.get("fmt") in SPARSE_FORMATS else "structured layers"
    low = kernel.lower()
    if "layout_transform" in low:
        return "layout transforms"
    if low.startswith("vm.builtin") or low.startswith("vm."):
        return "VM runtime"
    if any(marker in low for marker in _DENSE_MARKERS):
        return "dense conv / matmul"
    return "other (elementwise, pooling, reshapes...)"


def random_feeds(manifest: Mapping[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs matching the manifest's inputs (standard normal floats, small integers)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in manifest["inputs"]:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(d) for d in spec["shape"])
        if dtype.kind == "f":
            feeds[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec["name"]] = rng.random(shape) < 0.5
        else:
            feeds[spec["name"]] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def profile(artifact, inputs: Mapping[str, Any] | None = None, *, repeats: int = 5) -> Profile:
    """Profile a loaded :class:`~sparseforge.runtime.artifact.Artifact` on ``inputs`` (default: seeded random)."""
    feeds = dict(inputs) if inputs is not None else random_feeds(artifact.manifest)
    tensors = artifact.prepare(feeds)
    runner = artifact._runner
    for _ in range(2):
        runner.run_tensors(tensors)
    latencies = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        runner.run_tensors(tensors)
        latencies.append(time.perf_counter() - start)
    arrays = artifact.check_inputs(feeds)
    times = runner.profile(*arrays, repeats=max(1, repeats))
    records = {r["kernel"]: r for r in artifact.manifest.get("kernels", []) if r.get("kernel")}
    kernels = [KernelTime(name, category(name, records.get(name)), t.seconds, t.calls,
                          records[name]["node"] if name in records else None)
               for name, t in times.items()]
    kernels.sort(key=lambda k: -k.seconds)
    return Profile(float(np.median(latencies)), kernels, artifact.threads)
