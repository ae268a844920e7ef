"""CUDA targets, compilation of Relax/TIR modules for a GPU architecture, export and inspection of artifacts.

``build`` runs the zero pipeline (legalize + fuse), dlight's GPU rules (hand-scheduled kernels are marked
``tirx.is_scheduled`` and left alone) and ``tvm.compile`` with device code from nvcc (a fatbin with SASS and PTX
for the architecture; see :mod:`._driver`, which also makes this work without a GPU driver). ``export`` writes a
shared library; ``device_code_info`` reports the architectures of its embedded device code.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from typing import Any

from sparseforge.errors import UnsupportedOpError

from .._tvm import IRModule, Target, relax, tirx, tvm
from .._tvm import dlight as dl
from ..kernels._common import SparseKernel
from ..legalize import LEGALIZE_MAP
from . import _fatbin
from ._driver import CudaToolError, ensure_cuda_runtime, nvcc_callback

logger = logging.getLogger(__name__)

# Real architectures sm_70 .. sm_121 (Volta .. Blackwell); "a" (arch-specific, sm_90+) and "f" (family, sm_100+)
KNOWN_SM = (70, 72, 75, 80, 86, 87, 88, 89, 90, 100, 101, 103, 110, 120, 121)
_ARCH_RE = re.compile(r"^sm_(\d{2,3})([af]?)$")
DEFAULT_ARCH = "sm_90"


def check_arch(arch: str) -> str:
    """Validate an architecture name ("sm_80", "sm_90a", "sm_100f" ...); returns it, else ValueError."""
    m = _ARCH_RE.match(str(arch).strip().lower()) if isinstance(arch, str) else None
    if not m or int(m.group(1)) not in KNOWN_SM or (m.group(2) == "a" and int(m.group(1)) < 90) \
            or (m.group(2) == "f" and int(m.group(1)) < 100):
        raise ValueError(f"unknown CUDA architecture {arch!r}: expected sm_<NN> with NN in "
                         f"{', '.join(map(str, KNOWN_SM))} (optionally 'a' for sm_90+, 'f' for sm_100+), e.g. 'sm_90'")
    return m.group(0)


def arch_of(target: Any = None) -> str:
    """Architecture of a target given as None (``DEFAULT_ARCH``), "sm_XX", a dict or a TVM Target."""
    if target is None:
        return DEFAULT_ARCH
    if isinstance(target, str):
        return check_arch(target)
    if isinstance(target, dict):
        if target.get("kind", "cuda") != "cuda":
            raise ValueError(f"not a CUDA target: {target}")
        return check_arch(target.get("arch", DEFAULT_ARCH))
    kind = getattr(getattr(target, "kind", None), "name", None)
    if kind is not None:
        if kind != "cuda":
            raise ValueError(f"not a CUDA target: {target}")
        return check_arch(str(target.arch))
    raise ValueError(f"cannot read a CUDA architecture from {target!r}")


def cuda_target(arch: str = DEFAULT_ARCH):
    """TVM target ``{"kind": "cuda", "arch": arch}`` with an LLVM host."""
    arch = check_arch(arch) if arch is None or isinstance(arch, str) else arch_of(arch)
    return Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})


def _as_module(mod):
    if isinstance(mod, SparseKernel):
        mod = [mod]
    if isinstance(mod, (list, tuple)):
        return IRModule({k.name: k.func for k in mod})
    if isinstance(mod, tirx.PrimFunc):
        name = mod.attrs.get("global_symbol", "main") if mod.attrs else "main"
        return IRModule({str(name): mod})
    return mod


def _has_relax(mod) -> bool:
    return any(isinstance(f, relax.Function) for f in mod.functions.values())


def schedule(mod, arch: str = DEFAULT_ARCH):
    """Zero pipeline + dlight GPU rules under the target (Relax modules); TIR-only modules are returned as is."""
    mod = _as_module(mod)
    if not _has_relax(mod):
        return mod
    with cuda_target(arch):
        mod = relax.transform.LegalizeOps(customize_legalize_map=LEGALIZE_MAP)(mod)
        mod = relax.get_pipeline("zero")(mod)
        mod = _apply_rules(mod, [dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
                                 dl.gpu.Fallback()])
    return mod


def _apply_rules(mod, rules):
    """dlight's ``ApplyDefaultSchedule``, except that a rule raising on a function (dlight's GEMV rule fails on
    some fused matrix-vector functions) counts as not applying: the next rule is tried."""
    target = Target.current(allow_none=False)
    updated = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or (func.attrs is not None and "tirx.is_scheduled" in func.attrs):
            continue
        for rule in rules:
            try:
                space = rule.apply(func, target, False)
            except Exception as exc:  # noqa: BLE001 - a dlight rule's internal failure: try the next rule
                logger.debug("dlight %s failed on %s (%s); trying the next rule", type(rule).__name__,
                             gvar.name_hint, exc)
                continue
            if space is None:
                continue
            sch = space[0] if isinstance(space, (list, tuple)) else space
            updated[gvar] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
            break
    for gvar, func in updated.items():
        mod[gvar] = func
    return mod


def build(mod, arch: str = DEFAULT_ARCH, *, fast_math: bool = False, require_binary: bool = True):
    """Compile a Relax IRModule (may ``call_tir`` the scheduled kernels), a TIR module/PrimFunc, or
    SparseKernel(s) for CUDA ``arch``; returns the TVM executable (device code: nvcc fatbin, SASS + PTX).

    require_binary: raise CudaToolError if TVM's CUDA runtime cannot be loaded (no C compiler for the stub);
    with False the executable then holds CUDA source only (see :func:`device_code_info`)."""
    arch = check_arch(arch)
    try:
        ensure_cuda_runtime()
    except CudaToolError:
        if require_binary:
            raise
    mod = schedule(mod, arch)
    target = cuda_target(arch)
    with target, nvcc_callback(arch, fast_math=fast_math):
        return tvm.compile(mod, target=target)


# ------------------------------------------------------------------------------------------------- inspection


def _walk(mod):
    seen, stack = set(), [mod]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        yield m
        stack.extend(m.imports)


def cuda_modules(executable) -> list:
    """The ``cuda`` runtime modules inside a compile result (TIR Executable / Relax VMExecutable / Module)."""
    mod = getattr(executable, "mod", executable)
    return [m for m in _walk(mod) if m.kind == "cuda"]


def device_code_info(artifact) -> dict:
    """What device code an exported library (path) or an in-memory executable holds.

    Returns ``{"archs": [...], "sass": [...], "ptx": [...], "format": "fatbin"|"cubin"|"ptx"|"cuda-source"|None,
    "entries": [...], "kernels": [...]}``: ``archs`` the union of SASS and PTX architectures ("sm_90"; PTX
    entries report their ``.target`` when uncompressed), ``format`` "cuda-source" when no binary was embedded."""
    kernels: list[str] = []
    if isinstance(artifact, (str, os.PathLike)):
        with open(artifact, "rb") as f:
            blob = f.read()
        fmt = None
        if _fatbin.MAGIC in blob:
            fmt = "fatbin"
        elif re.search(rb"\.target\s+sm_\d+", blob):
            fmt = "ptx"
        elif b"extern \"C\" __global__" in blob:
            fmt = "cuda-source"
        entries = _fatbin.scan(blob)
        ptx_text = [] if entries else re.findall(rb"\.target\s+(sm_\d+[a-z]?)", blob)
        entries += [dict(kind="ptx", arch=t.decode(), size=0, compressed=False, elf=False) for t in set(ptx_text)]
        kernels = sorted(set(m.decode() for m in re.findall(rb"([A-Za-z_][A-Za-z0-9_]*_kernel)\x00", blob)))
    else:
        # a runtime CUDA module cannot write its binary (WriteToFile unsupported): export to a temporary file
        # (one host link) and scan that; source-only modules are recognised without exporting
        mods = cuda_modules(artifact)
        if not mods:
            return dict(archs=[], sass=[], ptx=[], format=None, entries=[], kernels=[])
        with tempfile.TemporaryDirectory(prefix="sparseforge-cuda-") as tmp:
            path = os.path.join(tmp, "artifact.so")
            artifact.export_library(path)
            return device_code_info(path)
    sass = sorted({e["arch"] for e in entries if e["kind"] == "sass"})
    ptx = sorted({e["arch"] for e in entries if e["kind"] == "ptx"})
    return dict(archs=sorted(set(sass) | set(ptx)), sass=sass, ptx=ptx, format=fmt, entries=entries,
                kernels=kernels)


def export(executable, path: str, arch: str | None = None, **build_opts) -> dict:
    """Write ``executable`` (or build ``executable`` first if it is a module / kernels) as a shared library.

    Raises ValueError if its device code is not for ``arch`` (when given), CudaToolError if it holds CUDA source
    only. Returns :func:`device_code_info` of the written file."""
    if not hasattr(executable, "export_library"):
        executable = build(executable, arch or DEFAULT_ARCH, **build_opts)
    info = device_code_info(executable)
    if info["format"] is None:
        raise UnsupportedOpError("the cuda target cannot compile this model: it has no device kernels (its outputs "
                                 "are inputs or constants)", hint="compile it for x86 or arm")
    if info["format"] == "cuda-source":
        raise CudaToolError("the executable holds CUDA source only (no device binary): rebuild it with "
                            "build(mod, arch) where a C compiler is available for the stub driver")
    if arch is not None:
        base = re.sub(r"[af]$", "", check_arch(arch))
        if base not in {re.sub(r"[af]$", "", a) for a in info["archs"]}:
            raise ValueError(f"the executable's device code is for {info['archs']}, not {arch}: rebuild it with "
                             f"build(mod, {arch!r})")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    executable.export_library(path)
    return device_code_info(path)
