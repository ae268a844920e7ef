"""Check a compiled artifact against ONNX Runtime running the original model, on seeded random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from sparseforge.runtime.verify import Comparison, output_error, random_inputs, session


def verify_against_onnxruntime(outdir: str | Path, original: onnx.ModelProto, *, rtol: float = 1e-4,
                               runs: int = 2, seed: int = 0) -> Comparison:
    """Max error of the artifact in ``outdir`` against ORT on ``original`` (relative to output magnitude)."""
    from sparseforge.runtime.artifact import load

    artifact = load(outdir)
    reference = session(original)
    errors = {}
    for run in range(runs):
        feeds = random_inputs(reference, seed + run)
        expected = reference.run(None, feeds)
        got = artifact(**{k: v for k, v in feeds.items() if k in artifact.input_names})
        for (name, value), ref in zip(got.items(), expected):
            err = output_error(name, np.asarray(ref), np.asarray(value))
            if name not in errors or err.max_rel > errors[name].max_rel:
                errors[name] = err
    return Comparison(list(errors.values()), rtol)
