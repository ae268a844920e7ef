"""CUDA: a Relax VM shared library with device code (SASS + PTX) for the requested ``--arch``, built with nvcc.

Dense layers use TVM's dlight GPU rules; sparse layers use sparseforge's hand-scheduled GPU kernels
(:mod:`sparseforge.codegen.cuda`). Without a GPU, device code still compiles (nvcc + a stub driver); the ``cuda``
runner then reports what it checked: the architectures embedded in the library.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sparseforge.errors import TargetError

from .. import cuda
from ..cuda.rules import CUDA_RULES
from .base import Target


@dataclasses.dataclass(frozen=True)
class CudaTarget:
    """One CUDA device: its SM architecture (host threads are unused by device code)."""

    arch: str = "sm_90"
    threads: int = 1

    def tvm_target(self):
        return cuda.cuda_target(self.arch)


class CudaFamily(Target):
    name = "cuda"
    runner = "cuda"

    def describe(self, *, threads=None, cpu=None, arch=None):
        if cpu:
            raise TargetError("--cpu does not apply to target 'cuda'", hint="use --arch sm_80, sm_90, ...")
        try:
            return CudaTarget(cuda.check_arch(arch or "sm_90"), threads or 1)
        except ValueError as exc:
            raise TargetError(str(exc)) from None

    def kernel_target(self, description):
        return description.arch

    def schedule_rules(self, description):
        return []  # dense layers: TVM's dlight GPU rules, applied inside cuda.build

    def kernel_rules(self, description):
        return CUDA_RULES

    def optimized(self, mod, description):
        return cuda.schedule(mod, description.arch)

    def build(self, mod, description, *, tune: int = 0):
        if tune:
            raise TargetError("--tune is not supported for cuda", hint="compile without --tune")
        try:
            return cuda.build(mod, description.arch)
        except (RuntimeError, OSError) as exc:  # nvcc missing or failing: say so
            raise TargetError(f"building CUDA device code failed: {str(exc).strip().splitlines()[-1][:300]}",
                              hint="install the CUDA toolkit (nvcc) and a C compiler") from None

    def write_artifact(self, tmpdir: Path, executable, *, description, **_):
        info = cuda.export(executable, str(tmpdir / "model.so"), description.arch)
        return {"library": "model.so", "device_code": {k: info[k] for k in ("archs", "sass", "ptx", "format")}}


TARGET = CudaFamily()
