"""CUDA: a Relax VM shared library with device code (SASS + PTX) for the requested ``--arch``, built with nvcc.

Dense layers use TVM's dlight GPU rules; sparse layers use sparseforge's hand-scheduled GPU kernels
(:mod:`sparseforge.codegen.cuda`). Without a GPU, device code still compiles (nvcc + a stub driver) and
verification reports what it checked: the architectures embedded in the library.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sparseforge.errors import TargetError

from .base import Backend, VerifyReport


@dataclasses.dataclass(frozen=True)
class CudaTarget:
    arch: str = "sm_90"
    threads: int = 1  # host threads (unused by device code)

    def tvm_target(self):
        from sparseforge.codegen.cuda import cuda_target

        return cuda_target(self.arch)


class CudaBackend(Backend):
    name = "cuda"

    def describe(self, *, threads=None, cpu=None, arch=None):
        from sparseforge.codegen.cuda import check_arch

        if cpu:
            raise TargetError("--cpu does not apply to target 'cuda'", hint="use --arch sm_80, sm_90, ...")
        try:
            return CudaTarget(check_arch(arch or "sm_90"), threads or 1)
        except ValueError as exc:
            raise TargetError(str(exc)) from None

    def kernel_target(self, target):
        return target.arch

    def kernel_builders(self, target):
        from sparseforge.codegen import cuda

        return cuda

    def build(self, mod, target, *, tune: int = 0):
        from sparseforge.codegen.cuda import build

        if tune:
            raise TargetError("--tune is not supported for cuda", hint="compile without --tune")
        try:
            return build(mod, target.arch)
        except (RuntimeError, OSError) as exc:  # nvcc missing or failing: say so
            raise TargetError(f"building CUDA device code failed: {str(exc).strip().splitlines()[-1][:300]}",
                              hint="install the CUDA toolkit (nvcc) and a C compiler") from None

    def write_artifact(self, tmpdir: Path, executable, *, target, **_):
        from sparseforge.codegen.cuda import export

        info = export(executable, str(tmpdir / "model.so"), target.arch)
        return {"library": "model.so", "device_code": {k: info[k] for k in ("archs", "sass", "ptx", "format")}}

    def verify(self, outdir: Path, original, *, rtol: float = 1e-4) -> VerifyReport:
        import json

        import numpy as np

        from sparseforge.codegen.cuda import device_code_info
        from sparseforge.codegen.cuda.runtime import ModelRunner, gpu_available
        from sparseforge.runtime.verify import Comparison, output_error, random_inputs, session

        manifest = json.loads((outdir / "manifest.json").read_text())
        arch = manifest["target"]["arch"]
        info = device_code_info(str(outdir / "model.so"))
        has_arch = arch in info["archs"] or any(a.rstrip("af") == arch.rstrip("af") for a in info["archs"])
        if not gpu_available():
            report = VerifyReport("cuda", False, "no GPU here: checked the compiled device code only")
            report.notes.append(f"model.so holds {info['format']} device code for {', '.join(info['archs'])} "
                                f"(SASS {info['sass']}, PTX {info['ptx']}); requested {arch}: "
                                f"{'present' if has_arch else 'MISSING'}")
            report.notes.append("run `sparseforge verify` on a machine with an NVIDIA GPU to check the numbers")
            if not has_arch:
                report.comparisons["device-code"] = Comparison([output_error("arch", np.zeros(1), np.ones(1))], rtol)
            return report
        reference = session(original)
        feeds = random_inputs(reference, 0)
        expected = reference.run(None, feeds)
        got = ModelRunner(str(outdir / "model.so"))(*[feeds[s["name"]] for s in manifest["inputs"]])
        errors = [output_error(s["name"], np.asarray(e), g) for s, e, g in zip(manifest["outputs"], expected, got)]
        return VerifyReport("cuda", True, "ran on the GPU", {"gpu": Comparison(errors, rtol)})


BACKEND = CudaBackend()
