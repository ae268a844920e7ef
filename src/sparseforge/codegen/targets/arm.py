"""ARM (aarch64-linux-gnu, NEON): a Relax VM shared library cross-linked with the aarch64 toolchain.

The library is what TVM's runtime loads on a device; the ``qemu-aarch64`` runner runs it here with TVM's aarch64
runtime (from the aarch64 wheels).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sparseforge.errors import SparseforgeError, UnsupportedOpError

from .base import Target

CROSS_CXX = "aarch64-linux-gnu-g++"


def _refuse_compiler_functions(names: set) -> None:
    """Refuse (exit 2) a model whose code calls functions of TVM's compiler library: the aarch64 device has the
    runtime library only."""
    if names:
        listing = ", ".join(sorted(n.decode() if isinstance(n, bytes) else n for n in names))
        raise UnsupportedOpError(
            f"the model needs functions that TVM's device runtime does not have: {listing} (data-dependent "
            "shapes such as NonZero/Unique/dynamic Squeeze axes, or TopK/sorting)",
            hint="compile it for x86, or make those shapes static (e.g. --bind the shape/axes inputs)")


class ArmTarget(Target):
    name = "arm"
    runner = "qemu-aarch64"

    def build(self, mod, description, *, tune: int = 0):
        from sparseforge.codegen.vm import registry_functions  # TVM is optional

        executable = super().build(mod, description, tune=tune)
        _refuse_compiler_functions(registry_functions(executable))
        return executable

    def write_artifact(self, tmpdir: Path, executable, **_):
        if shutil.which(CROSS_CXX) is None:
            raise SparseforgeError(f"{CROSS_CXX} not found: cannot link the aarch64 library",
                                   hint="apt-get install g++-aarch64-linux-gnu")
        from sparseforge.codegen._tvm import cross_linker  # TVM is optional

        executable.export_library(str(tmpdir / "model.so"), fcompile=cross_linker(CROSS_CXX))
        # kernels that call TVM's compiler library by name (topi's sort/topk call tvm.contrib.sort.*)
        _refuse_compiler_functions(set(re.findall(rb"(?:tvm\.contrib|relax\.run)\.[A-Za-z0-9_.]+",
                                                  (tmpdir / "model.so").read_bytes())))
        return {"library": "model.so", "runtime": "TVM runtime (libtvm_runtime.so + libtvm_ffi.so) for aarch64"}


TARGET = ArmTarget()
