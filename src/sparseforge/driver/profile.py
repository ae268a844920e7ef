"""Profile a compiled artifact for the report: measured time per layer and per category, and the measured speedup
over ONNX Runtime on the model it was compiled from (same inputs, same thread count, interleaved rounds)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from sparseforge.errors import SparseforgeError
from sparseforge.runtime.artifact import load as load_artifact
from sparseforge.runtime.compare import session
from sparseforge.runtime.profile import profile, random_feeds


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def profile_artifact(artifact_dir: str | Path, reference=None, *, repeats: int = 5, rounds: int = 5,
                     threads: int | None = None) -> dict[str, Any]:
    """Profile the artifact in ``artifact_dir`` on seeded random inputs; with ``reference`` (an ONNX model the
    artifact was compiled from, taking the same inputs) also time ONNX Runtime on it, interleaved with the
    artifact, and report ``measured_speedup`` (median of ``rounds`` rounds of median-of-``repeats``)."""
    artifact = load_artifact(artifact_dir, threads=threads)
    if artifact.manifest["target"]["name"] != "x86":
        raise SparseforgeError("only x86 artifacts can be profiled on this machine", where=str(artifact_dir))
    feeds = random_feeds(artifact.manifest)
    result = profile(artifact, feeds, repeats=repeats).to_dict()
    if reference is None:
        return result
    try:
        sess = session(reference, threads=int(artifact.threads or 1))
        ort_feeds = {i.name: feeds[i.name] for i in sess.get_inputs()}
    except (KeyError, Exception) as exc:  # a model ORT cannot run, or other inputs: no comparison, say why
        result["onnxruntime_error"] = str(exc).splitlines()[0][:200]
        return result
    tensors = artifact.prepare(feeds)
    engines = {"sparseforge": lambda: artifact.run_prepared(tensors),
               "onnxruntime": lambda: sess.run(None, ort_feeds)}
    for fn in engines.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(max(1, rounds)):
        for name, fn in engines.items():
            samples[name].append(_median_seconds(fn, max(1, repeats)))
    ours, ort = (float(np.median(samples[n])) for n in ("sparseforge", "onnxruntime"))
    result.update(latency_s=ours, onnxruntime_s=ort, measured_speedup=ort / ours if ours > 0 else None)
    return result
