"""Per-target runners: run an artifact where its code really runs, NumPy inputs in, ``{output name: array}`` out.

Each target family names its runner (``Target.runner`` in :mod:`sparseforge.codegen.targets`):

=================  ======================================================================================
``host``           x86 artifacts in this process (:mod:`.artifact`, TVM runtime)
``qemu-aarch64``   arm artifacts: the whole model under qemu with TVM's aarch64 runtime (:mod:`.qemu`)
``wasm``           model.wasm in wasmtime, and through its model.mjs loader in Node.js (:mod:`.wasm_runner`)
``cuda``           on the GPU (TVM's CUDA runtime); unavailable without one
=================  ======================================================================================

A runner that cannot run here says why (:meth:`Runner.unavailable`) instead of raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparseforge.errors import TargetError

from . import qemu, wasm_runner
from .artifact import Artifact


class Runner:
    """Runs artifacts of one kind; ``label`` names it in verification reports."""

    label = "?"
    how = ""
    #: Random input sets a verification runs through it (cheap in process, expensive under emulation).
    runs = 1

    def unavailable(self) -> str | None:
        """Why this runner cannot run on this machine (None: it can)."""
        return None

    def run(self, outdir: Path, manifest: Mapping[str, Any], inputs: Mapping[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
        raise NotImplementedError


class HostRunner(Runner):
    label = "host"
    how = "ran in this process (TVM runtime, host CPU)"
    runs = 2

    def run(self, outdir, manifest, inputs):
        return Artifact(outdir)(**{s["name"]: inputs[s["name"]] for s in manifest["inputs"]})


class QemuRunner(Runner):
    label = "qemu-aarch64"
    how = "whole model under qemu-aarch64 with TVM's aarch64 runtime"

    def unavailable(self):
        missing = qemu.tools_available()
        return f"missing {', '.join(missing)}" if missing else None

    def run(self, outdir, manifest, inputs):
        got = qemu.run_vm(Path(outdir) / manifest["library"], [inputs[s["name"]] for s in manifest["inputs"]],
                          threads=manifest["target"]["threads"])
        return dict(zip([o["name"] for o in manifest["outputs"]], got))


class WasmtimeRunner(Runner):
    label = "wasmtime"
    how = "model.wasm in wasmtime"

    def run(self, outdir, manifest, inputs):
        return wasm_runner.run_wasmtime(outdir, inputs)


class NodeRunner(Runner):
    label = "node"
    how = "model.wasm through model.mjs in Node.js"

    def unavailable(self):
        return None if wasm_runner.node_available() else "Node.js not found"

    def run(self, outdir, manifest, inputs):
        return wasm_runner.run_node(outdir, inputs)[0]


class CudaRunner(Runner):
    label = "gpu"
    how = "ran on the GPU"

    def unavailable(self):
        from sparseforge.codegen.cuda.device import gpu_available  # TVM is optional

        return None if gpu_available() else "no GPU here"

    def run(self, outdir, manifest, inputs):
        from sparseforge.codegen.cuda.device import ModelRunner  # TVM is optional

        got = ModelRunner(str(Path(outdir) / manifest["library"]))(*[inputs[s["name"]] for s in manifest["inputs"]])
        return dict(zip([o["name"] for o in manifest["outputs"]], got))


_RUNNERS: dict[str, tuple[Runner, ...]] = {
    "host": (HostRunner(),),
    "qemu-aarch64": (QemuRunner(),),
    "wasm": (WasmtimeRunner(), NodeRunner()),
    "cuda": (CudaRunner(),),
}


def runners(kind: str) -> tuple[Runner, ...]:
    """The runners of kind ``kind`` (a ``Target.runner`` name), in order."""
    if kind not in _RUNNERS:
        raise TargetError(f"no runner for '{kind}'", hint=f"known runners: {', '.join(_RUNNERS)}")
    return _RUNNERS[kind]
