"""ARM (aarch64-linux-gnu, NEON): a Relax VM shared library cross-linked with the aarch64 toolchain.

The library is what TVM's runtime loads on a device; the ``qemu-aarch64`` runner runs it here with TVM's aarch64
runtime (from the aarch64 wheels).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sparseforge.errors import SparseforgeError

from .._tvm import cross_linker
from ..vm import registry_functions
from .base import Target, compiler_functions_in, refuse_compiler_functions

CROSS_CXX = "aarch64-linux-gnu-g++"


class ArmTarget(Target):
    name = "arm"
    runner = "qemu-aarch64"

    def build(self, mod, description, *, tune: int = 0):
        executable = super().build(mod, description, tune=tune)
        refuse_compiler_functions(registry_functions(executable))
        return executable

    def write_artifact(self, tmpdir: Path, executable, **_):
        if shutil.which(CROSS_CXX) is None:
            raise SparseforgeError(f"{CROSS_CXX} not found: cannot link the aarch64 library",
                                   hint="apt-get install g++-aarch64-linux-gnu")
        executable.export_library(str(tmpdir / "model.so"), fcompile=cross_linker(CROSS_CXX))
        refuse_compiler_functions(compiler_functions_in(tmpdir / "model.so"))
        return {"library": "model.so", "runtime": "TVM runtime (libtvm_runtime.so + libtvm_ffi.so) for aarch64"}


TARGET = ArmTarget()
