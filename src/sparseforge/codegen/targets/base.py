"""What every target backend provides (CPU defaults; CUDA overrides most of it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sparseforge.errors import TargetError


@dataclasses.dataclass
class VerifyReport:
    """Result of running an artifact where its code really runs (or of checking what could be checked)."""

    target: str
    ran: bool
    how: str
    comparisons: dict[str, Any] = dataclasses.field(default_factory=dict)  # runner name -> Comparison
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons.values()) and (self.ran or not self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ran": self.ran, "how": self.how, "ok": self.ok, "notes": self.notes,
                "comparisons": {k: v.to_dict() for k, v in self.comparisons.items()}}


class Backend:
    """A compile target family. Subclasses set ``name`` and override what differs."""

    name = "?"
    #: Whether artifacts run on this machine directly (x86 host builds).
    runs_on_host = False

    # ---------------------------------------------------------------- description
    def describe(self, *, threads: int | None = None, cpu: str | None = None, arch: str | None = None):
        """The target description (a CompileTarget for CPUs)."""
        from sparseforge.codegen.target import make_target

        if arch is not None:
            raise TargetError(f"--arch does not apply to target '{self.name}'", hint="--arch is for cuda")
        try:
            return make_target(self.name, threads, cpu=cpu)
        except ValueError as exc:
            raise TargetError(str(exc)) from None

    def kernel_target(self, target):
        """What the sparse-kernel builders need (vector lanes, threads, TVM target dict)."""
        from sparseforge.codegen import kernels as K

        config = dict(target.tvm_target().export())
        tvm_dict = {k: v for k, v in config.items() if k in ("kind", "mtriple", "mcpu", "mattr")}
        return K.make_target(tvm_dict, threads=target.threads, lanes=target.vector_lanes)

    def kernel_builders(self, target):
        """The module providing csr_matmul / bsr_matmul / nm_matmul / sparse_conv1x1 for this target."""
        from sparseforge.codegen import kernels

        return kernels

    def cost_model(self, target, kernel_target, *, calibrate: bool = True):
        """The dense-vs-sparse cost model (measured on the host; rules where no device is at hand)."""
        from sparseforge.codegen.cost_rules import RuleCostModel

        return RuleCostModel.for_target(self.name)

    # ---------------------------------------------------------------- building
    def build(self, mod, target, *, tune: int = 0):
        from sparseforge.codegen import pipeline

        if tune:
            return pipeline.tune_and_build(mod, target, trials=tune)
        return pipeline.build(mod, target)

    def write_artifact(self, tmpdir: Path, executable, *, target, optimized, manifest: dict,
                       example_inputs: list) -> dict[str, Any]:
        """Write the target's files into ``tmpdir``; returns extra manifest fields."""
        raise NotImplementedError

    # ---------------------------------------------------------------- running
    def verify(self, outdir: Path, original, *, rtol: float = 1e-4) -> VerifyReport:
        raise NotImplementedError
