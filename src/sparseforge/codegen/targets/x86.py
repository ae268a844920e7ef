"""x86 (the host CPU, AVX2/AVX-512 detected): Relax VM shared library, run and verified in process."""

from __future__ import annotations

from pathlib import Path

from .base import Backend, VerifyReport


class X86Backend(Backend):
    name = "x86"
    runs_on_host = True

    def describe(self, *, threads=None, cpu=None, arch=None):
        from sparseforge.codegen.target import CompileTarget, detect_x86

        if cpu:  # cross-compile for another x86 CPU (features inferred from its name)
            return CompileTarget(kind="x86", mcpu=cpu, threads=threads or 1)
        return super().describe(threads=threads, arch=arch) if arch else detect_x86(threads)

    def cost_model(self, target, kernel_target, *, calibrate=True):
        from sparseforge.codegen.calibration import cost_model_for

        return cost_model_for(target, kernel_target, measure=calibrate)

    def write_artifact(self, tmpdir: Path, executable, **_):
        executable.export_library(str(tmpdir / "model.so"))
        return {"library": "model.so"}

    def verify(self, outdir: Path, original, *, rtol: float = 1e-4) -> VerifyReport:
        from sparseforge.runtime.verify_artifact import verify_against_onnxruntime

        comparison = verify_against_onnxruntime(outdir, original, rtol=rtol)
        return VerifyReport("x86", True, "ran in this process (TVM runtime, host CPU)", {"host": comparison})


BACKEND = X86Backend()
