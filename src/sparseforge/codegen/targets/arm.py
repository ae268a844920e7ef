"""ARM (aarch64-linux-gnu, NEON): a Relax VM shared library cross-linked with the aarch64 toolchain.

The library is what TVM's runtime loads on a device. Verification runs the whole model under ``qemu-aarch64``
with TVM's aarch64 runtime (from the aarch64 wheels) and compares with ONNX Runtime.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sparseforge.errors import SparseforgeError

from .base import Backend, VerifyReport

CROSS_CXX = "aarch64-linux-gnu-g++"


class ArmBackend(Backend):
    name = "arm"

    def write_artifact(self, tmpdir: Path, executable, **_):
        if shutil.which(CROSS_CXX) is None:
            raise SparseforgeError(f"{CROSS_CXX} not found: cannot link the aarch64 library",
                                   hint="apt-get install g++-aarch64-linux-gnu")
        executable.export_library(str(tmpdir / "model.so"), cc=CROSS_CXX)
        return {"library": "model.so", "runtime": "TVM runtime (libtvm_runtime.so + libtvm_ffi.so) for aarch64"}

    def verify(self, outdir: Path, original, *, rtol: float = 1e-4) -> VerifyReport:
        import json

        import numpy as np

        from sparseforge.runtime import qemu
        from sparseforge.runtime.verify import Comparison, output_error, random_inputs, session

        manifest = json.loads((outdir / "manifest.json").read_text())
        reference = session(original)
        feeds = random_inputs(reference, 0)
        expected = reference.run(None, feeds)
        got = qemu.run_vm(outdir / "model.so", [feeds[s["name"]] for s in manifest["inputs"]],
                          threads=manifest["target"]["threads"])
        errors = [output_error(spec["name"], np.asarray(e), g)
                  for spec, e, g in zip(manifest["outputs"], expected, got)]
        return VerifyReport("arm", True, "whole model under qemu-aarch64 with TVM's aarch64 runtime",
                            {"qemu-aarch64": Comparison(errors, rtol)})


BACKEND = ArmBackend()
