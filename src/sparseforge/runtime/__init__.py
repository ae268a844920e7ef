"""Load and run compiled artifacts: ``sparseforge.runtime.load(OUTDIR)(**inputs)``; the per-target runners
(:mod:`.runners`) and ONNX Runtime comparisons (:mod:`.compare`). Nothing here compiles or rewrites."""

from sparseforge.runtime.artifact import Artifact, load, load_inputs

__all__ = ["Artifact", "load", "load_inputs"]
