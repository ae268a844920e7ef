"""WebAssembly (wasm32 + SIMD128): a self-contained model.wasm (no TVM runtime) and an ES-module loader.

Kernels are compiled for wasm32; the kernel sequence and memory plan come from tracing a host build with the same
vector width (:func:`~sparseforge.codegen.target.host_shadow_of`). Verified in wasmtime and in Node.js.
"""

from __future__ import annotations

from pathlib import Path

from .base import Backend, VerifyReport


class WasmBackend(Backend):
    name = "wasm"

    def build(self, mod, target, *, tune: int = 0):
        """Device (wasm32) and host-shadow builds of the same module: ``(device_llvm_module, host_executable)``."""
        from sparseforge.codegen import _tvm, aot, pipeline
        from sparseforge.codegen.target import host_shadow_of

        device = _tvm.relax.build(pipeline.optimize(mod, target), target.tvm_target(), system_lib=False)
        host = pipeline.build(mod, host_shadow_of(target))
        return WasmBuild(aot.host_llvm_module(device), host)

    def write_artifact(self, tmpdir: Path, executable, *, manifest, example_inputs, **_):
        from sparseforge.codegen import wasm

        facts = wasm.write_artifact(tmpdir, host_executable=executable.host,
                                    device_llvm_module=executable.device_module, example_inputs=example_inputs,
                                    manifest=manifest)
        return {"library": "model.wasm", "loader": "model.mjs", "wasm": facts}

    def verify(self, outdir: Path, original, *, rtol: float = 1e-4) -> VerifyReport:
        import json

        from sparseforge.runtime import wasm_runner
        from sparseforge.runtime.verify import Comparison, output_error, random_inputs, session

        manifest = json.loads((outdir / "manifest.json").read_text())
        reference = session(original)
        feeds = random_inputs(reference, 0)
        expected = dict(zip([o["name"] for o in manifest["outputs"]], reference.run(None, feeds)))
        inputs = {s["name"]: feeds[s["name"]] for s in manifest["inputs"]}
        report = VerifyReport("wasm", True, "whole model: model.wasm in wasmtime and through model.mjs in Node.js")
        got = wasm_runner.run_wasmtime(outdir, inputs)
        report.comparisons["wasmtime"] = Comparison([output_error(n, expected[n], got[n]) for n in got], rtol)
        if wasm_runner.node_available():
            got, _ = wasm_runner.run_node(outdir, inputs)
            report.comparisons["node"] = Comparison([output_error(n, expected[n], got[n]) for n in got], rtol)
        else:
            report.notes.append("Node.js not found: only wasmtime ran the module")
        return report


class WasmBuild:
    """The two builds a WebAssembly artifact needs."""

    def __init__(self, device_module, host):
        self.device_module = device_module
        self.host = host


BACKEND = WasmBackend()
