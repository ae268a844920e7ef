"""x86 (the host CPU, AVX2/AVX-512 detected): a Relax VM shared library, run in process; decisions measured here."""

from __future__ import annotations

from pathlib import Path

from ..cost.measured import cost_model_for
from ..cpu_target import CompileTarget, detect_x86
from .base import Target


class X86Target(Target):
    name = "x86"
    runner = "host"
    runs_on_host = True

    def describe(self, *, threads=None, cpu=None, arch=None):
        if cpu:  # cross-compile for another x86 CPU (features inferred from its name)
            return CompileTarget(kind="x86", mcpu=cpu, threads=threads or 1)
        return super().describe(threads=threads, arch=arch) if arch else detect_x86(threads)

    def cost_model(self, description, kernel_target, *, measure=True):
        return cost_model_for(description, kernel_target, measure=measure)

    def write_artifact(self, tmpdir: Path, executable, **_):
        executable.export_library(str(tmpdir / "model.so"))
        return {"library": "model.so"}


TARGET = X86Target()
