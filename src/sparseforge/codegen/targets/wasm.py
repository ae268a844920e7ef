"""WebAssembly (wasm32 + SIMD128): a self-contained model.wasm (no TVM runtime) and an ES-module loader.

Kernels are compiled for wasm32; the kernel sequence and memory plan come from tracing a host build with the same
vector width (:func:`~sparseforge.codegen.cpu_target.host_shadow_of`). The ``wasm`` runner runs it in wasmtime
and Node.js.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .. import _tvm, aot, wasm
from .. import build as relax_build
from ..cpu_target import host_shadow_of
from .base import Target, compiler_functions_in, refuse_compiler_functions


@dataclasses.dataclass(frozen=True)
class WasmBuild:
    """The two builds a WebAssembly artifact needs: the wasm32 kernels and the host build traced for the plan."""

    device_module: Any
    host: Any


class WasmTarget(Target):
    name = "wasm"
    runner = "wasm"

    def build(self, mod, description, *, tune: int = 0):
        device = _tvm.relax.build(relax_build.optimize(mod, description), description.tvm_target(),
                                  system_lib=False)
        host = relax_build.build(mod, host_shadow_of(description))
        return WasmBuild(aot.host_llvm_module(device), host)

    def write_artifact(self, tmpdir: Path, executable, *, manifest, example_inputs, **_):
        facts = wasm.write_artifact(tmpdir, host_executable=executable.host,
                                    device_llvm_module=executable.device_module, example_inputs=example_inputs,
                                    manifest=manifest)
        refuse_compiler_functions(compiler_functions_in(tmpdir / "model.wasm"))
        return {"library": "model.wasm", "loader": "model.mjs", "wasm": facts}


TARGET = WasmTarget()
