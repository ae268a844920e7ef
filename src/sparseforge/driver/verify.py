"""``sparseforge verify``: run an artifact where its code really runs and compare it with ONNX Runtime.

ONNX Runtime runs the reference (the artifact's own ``model.onnx``, i.e. the exact rewrite it was compiled from,
unless another model is given) on seeded random inputs; every runner of the target family that is available here
(:mod:`sparseforge.runtime.runners`) runs the artifact on the same inputs. A CUDA artifact on a machine without a
GPU is checked for what can be checked: the device code it holds for the requested architecture.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from sparseforge import artifact
from sparseforge.codegen.cuda import device_code_info
from sparseforge.codegen.targets import get_target
from sparseforge.runtime import runners
from sparseforge.runtime.compare import (
    COMPILED_RTOL,
    Comparison,
    OutputError,
    default_rtol,
    output_error,
    random_inputs,
    session,
)


@dataclasses.dataclass
class VerifyReport:
    """Result of running an artifact where its code really runs (or of checking what could be checked)."""

    target: str
    ran: bool
    how: str
    comparisons: dict[str, Comparison] = dataclasses.field(default_factory=dict)  # runner label -> Comparison
    notes: list[str] = dataclasses.field(default_factory=list)
    rtol: float | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons.values()) and (self.ran or not self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ran": self.ran, "how": self.how, "ok": self.ok, "rtol": self.rtol,
                "notes": self.notes,
                "comparisons": {k: v.to_dict() for k, v in self.comparisons.items()}}


def verify_artifact(outdir: str | Path, reference: onnx.ModelProto | None = None, *, rtol: float | None = None,
                    seed: int = 0) -> VerifyReport:
    """Run the artifact in ``outdir`` with every available runner of its target and compare with ORT.

    ``rtol`` (relative to the output magnitude) defaults by output dtype: 1e-4 for fp32, 1e-2 for fp16/bf16."""
    outdir = Path(outdir)
    manifest = artifact.read_manifest(outdir)
    if rtol is None:
        rtol = default_rtol([o["dtype"] for o in manifest["outputs"]], fp32=COMPILED_RTOL)
    name = manifest["target"]["name"]
    family = get_target(name)
    if reference is None:
        reference = onnx.load(outdir / manifest["onnx"])
    available = [r for r in runners.runners(family.runner) if r.unavailable() is None]
    skipped = [r for r in runners.runners(family.runner) if r.unavailable() is not None]
    if not available:
        if name == "cuda":
            return _check_device_code(outdir, manifest, rtol)
        why = "; ".join(f"{r.label}: {r.unavailable()}" for r in skipped)
        return VerifyReport(name, False, f"could not run here ({why})", notes=[why])
    report = VerifyReport(name, True, "; ".join(r.how for r in available), rtol=rtol)
    report.notes.extend(f"{r.label} did not run: {r.unavailable()}" for r in skipped)
    ref = session(reference)
    for runner in available:
        errors: dict[str, OutputError] = {}
        for run in range(runner.runs):
            feeds = random_inputs(ref, seed + run)
            expected = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, feeds)))
            got = runner.run(outdir, manifest, feeds)
            for spec in manifest["outputs"]:
                err = output_error(spec["name"], np.asarray(expected[spec["name"]]), np.asarray(got[spec["name"]]))
                if spec["name"] not in errors or err.max_rel > errors[spec["name"]].max_rel:
                    errors[spec["name"]] = err
        report.comparisons[runner.label] = Comparison(list(errors.values()), rtol)
    return report


def _check_device_code(outdir: Path, manifest: dict[str, Any], rtol: float) -> VerifyReport:
    arch = manifest["target"]["arch"]
    info = device_code_info(str(outdir / manifest["library"]))
    has_arch = arch in info["archs"] or any(a.rstrip("af") == arch.rstrip("af") for a in info["archs"])
    report = VerifyReport("cuda", False, "no GPU here: checked the compiled device code only")
    report.notes.append(f"model.so holds {info['format']} device code for {', '.join(info['archs'])} "
                        f"(SASS {info['sass']}, PTX {info['ptx']}); requested {arch}: "
                        f"{'present' if has_arch else 'MISSING'}")
    report.notes.append("run `sparseforge verify` on a machine with an NVIDIA GPU to check the numbers")
    if not has_arch:
        report.comparisons["device-code"] = Comparison([OutputError("arch", float("inf"), float("inf"))], rtol)
    return report
