"""What every target family provides (CPU defaults; CUDA overrides most of it).

A :class:`Target` is one device family (x86, arm, wasm, cuda): how to describe a concrete device of it, the
schedule rules for dense code, the kernel rules for ``ai.sparseforge`` ops (first match wins, dense fallback
last), the dense-vs-sparse cost model, the build, the artifact writer, and which runner (``runtime.runners``)
executes its artifacts. Adding a target is one module in this package plus one line in its registry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sparseforge.errors import TargetError, UnsupportedOpError

from .. import build as relax_build
from .. import kernels
from ..cost.rules import RuleCostModel
from ..cpu_target import CompileTarget, make_target
from ..kernels.rules import CPU_RULES
from ..schedules import default_rules


def compiler_functions_in(path: Path) -> set[str]:
    """Names of TVM compiler-library functions a built library calls by name (topi's sort/topk kernels call
    ``tvm.contrib.sort.*``; data-dependent shapes ``relax.run.*``)."""
    found = re.findall(rb"(?:tvm\.contrib|relax\.run)\.[A-Za-z0-9_.]+", Path(path).read_bytes())
    return {name.decode() for name in found}


def refuse_compiler_functions(names: set[str]) -> None:
    """Refuse (exit 2) a model whose code needs functions of TVM's compiler library: a device has the runtime
    library only (arm), or no TVM at all (wasm)."""
    if names:
        raise UnsupportedOpError(
            f"the model needs functions that only TVM's compiler library has: {', '.join(sorted(names))} "
            "(data-dependent shapes such as NonZero/Unique/dynamic Squeeze axes, or TopK/sorting)",
            hint="compile it for x86, or make those shapes static (e.g. --bind the shape/axes inputs)")


class Target:
    """A compile target family. Subclasses set ``name``/``runner`` and override what differs."""

    name = "?"
    #: Key of the runner in :mod:`sparseforge.runtime.runners` that executes this family's artifacts.
    runner = "?"
    #: Whether artifacts run on this machine directly (x86 host builds): decisions can be measured here.
    runs_on_host = False

    # ---------------------------------------------------------------- description
    def describe(self, *, threads: int | None = None, cpu: str | None = None, arch: str | None = None
                 ) -> CompileTarget:
        """The description of one device of this family (a :class:`CompileTarget` for CPUs)."""
        if arch is not None:
            raise TargetError(f"--arch does not apply to target '{self.name}'", hint="--arch is for cuda")
        try:
            return make_target(self.name, threads, cpu=cpu)
        except ValueError as exc:
            raise TargetError(str(exc)) from None

    def kernel_target(self, description: CompileTarget) -> kernels.KernelTarget:
        """The view of ``description`` the kernel rules take (vector lanes, threads, TVM target dict)."""
        config = dict(description.tvm_target().export())
        tvm_dict = {k: v for k, v in config.items() if k in ("kind", "mtriple", "mcpu", "mattr")}
        return kernels.make_target(tvm_dict, threads=description.threads, lanes=description.vector_lanes)

    def schedule_rules(self, description: CompileTarget) -> list:
        """dlight-style schedule rules for dense code, in order (first match wins, fallback last)."""
        return default_rules(description)

    def kernel_rules(self, description: CompileTarget) -> list:
        """Kernel rules for ``ai.sparseforge`` ops, in order (first match wins, dense fallback last); the CPU
        families share the TIR generators' rules."""
        return CPU_RULES

    def cost_model(self, description: CompileTarget, kernel_target: Any, *, measure: bool = True):
        """The dense-vs-sparse cost model: published crossover densities unless the family measures."""
        return RuleCostModel.for_target(self.name)

    # ---------------------------------------------------------------- building
    def optimized(self, mod, description: CompileTarget):
        """The Relax module after sparseforge's passes (legalize, fuse, schedule), as the build compiles it (for
        ``--dump-ir``)."""
        return relax_build.optimize(mod, description)

    def build(self, mod, description: CompileTarget, *, tune: int = 0):
        if tune:
            return relax_build.tune_and_build(mod, description, trials=tune)
        return relax_build.build(mod, description)

    def write_artifact(self, tmpdir: Path, executable, *, description, optimized, manifest: dict,
                       example_inputs: list) -> dict[str, Any]:
        """Write the family's files into ``tmpdir``; returns extra manifest fields."""
        raise NotImplementedError

    def facts(self, description) -> dict[str, Any]:
        """What the manifest records about the device (JSON-ready)."""
        facts: dict[str, Any] = {"name": self.name}
        for key in ("mcpu", "threads", "vector_lanes", "arch"):
            if hasattr(description, key):
                facts[key] = getattr(description, key)
        if hasattr(description, "features"):
            facts["features"] = sorted(f for f in description.features if f.startswith(_SIMD_PREFIXES))
        facts["tvm_target"] = dict(description.tvm_target().export())
        return facts


_SIMD_PREFIXES = ("sse", "avx", "fma", "f16c", "neon", "asimd", "simd")
