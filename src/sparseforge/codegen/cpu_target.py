"""CPU compile targets: what the schedules need to know about the machine.

A :class:`CompileTarget` is a small frozen description (architecture family, CPU name, SIMD
features, thread count) from which the TVM ``Target`` (JSON-dict form, the only form TVM 0.27
accepts) and the schedule parameters (vector width, register count) are derived. Families:
``x86`` (the host, AVX2 / AVX-512 detected), ``arm`` (aarch64-linux-gnu with NEON, ``cpu`` picks the
core) and ``wasm`` (wasm32 with SIMD128, single-threaded). CUDA is described separately
(:mod:`sparseforge.codegen.targets.cuda`).

Detection reads ``/proc/cpuinfo`` flags (Linux) and LLVM's host CPU name, so the same code picks
16 float32 lanes on an AVX-512 machine and 8 on an AVX2-only CI runner. ``CompileTarget`` can also
be built by hand to cross-compile for another x86 CPU (e.g. ``mcpu="znver3"``): features are then
inferred from the CPU name.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field, replace

from . import _tvm

__all__ = ["ARM_CPUS", "KNOWN_TARGETS", "CompileTarget", "arm_target", "detect_x86", "host_shadow_of", "make_target",
           "wasm_target"]

#: CPU target families this module describes.
KNOWN_TARGETS: tuple[str, ...] = ("x86", "arm", "wasm")
PLANNED_TARGETS: tuple[str, ...] = ()

#: aarch64 cores accepted by ``--cpu`` (LLVM ``-mcpu`` names); all have NEON (ASIMD) with FMA.
ARM_CPUS: tuple[str, ...] = (
    "generic", "cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72", "cortex-a73", "cortex-a75", "cortex-a76",
    "cortex-a77", "cortex-a78", "cortex-a710", "cortex-x1", "cortex-x2", "neoverse-n1", "neoverse-n2",
    "neoverse-v1", "apple-m1", "apple-m2", "ampere1",
)
_ARM_FEATURES = frozenset({"neon", "asimd", "fma"})
_WASM_FEATURES = frozenset({"simd128"})

# x86 CPU names (LLVM ``-mcpu``) whose vector unit is AVX-512 (F + VL) or at least AVX2 + FMA.
_AVX512_CPUS = frozenset({
    "znver4", "znver5", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
    "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids",
    "graniterapids-d", "diamondrapids", "x86-64-v4", "knl", "knm",
})
_AVX2_CPUS = frozenset({
    "haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "arrowlake", "arrowlake-s",
    "lunarlake", "pantherlake", "gracemont", "sierraforest", "grandridge", "clearwaterforest", "znver1",
    "znver2", "znver3", "bdver4", "x86-64-v3", "core-avx2",
})


def _features_from_mcpu(mcpu: str) -> frozenset[str]:
    if mcpu in _AVX512_CPUS:
        return frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl"})
    if mcpu in _AVX2_CPUS:
        return frozenset({"sse4_2", "avx", "avx2", "fma"})
    return frozenset({"sse2"})


def _cpuinfo_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@dataclass(frozen=True)
class CompileTarget:
    """A compile target.

    ``kind``: target family (``"x86"``). ``mcpu``: LLVM CPU name (``"znver5"``, ``"znver3"``...).
    ``features``: CPU feature flags in ``/proc/cpuinfo`` spelling (``avx2``, ``fma``, ``avx512f``);
    empty means "infer from ``mcpu``". ``threads``: worker threads the compiled code is meant to
    run with (recorded as ``num-cores`` in the TVM target; see ``pipeline.set_num_threads`` for
    how the runtime thread pool is actually sized). ``mtriple``: LLVM triple, ``None`` = host.
    """

    kind: str = "x86"
    mcpu: str = "x86-64-v3"
    features: frozenset[str] = field(default_factory=frozenset)
    threads: int = 1
    mtriple: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KNOWN_TARGETS:
            raise ValueError(_unknown_message(self.kind))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.kind == "arm":
            if self.mcpu not in ARM_CPUS:
                raise ValueError(f"unknown ARM CPU {self.mcpu!r}; known: {', '.join(ARM_CPUS)}")
            object.__setattr__(self, "features", _ARM_FEATURES)
            object.__setattr__(self, "mtriple", self.mtriple or "aarch64-linux-gnu")
        elif self.kind == "wasm":
            object.__setattr__(self, "features", _WASM_FEATURES)
            object.__setattr__(self, "mtriple", "wasm32-unknown-unknown-wasm")
            object.__setattr__(self, "threads", 1)  # a wasm module runs on one thread
        elif not self.features:
            object.__setattr__(self, "features", _features_from_mcpu(self.mcpu))

    @property
    def simd_bits(self) -> int:
        """Width of the widest usable float vector register, in bits."""
        if "avx512f" in self.features:
            return 512
        if "avx" in self.features or "avx2" in self.features:
            return 256
        return 128

    @property
    def vector_lanes(self) -> int:
        """SIMD width in float32 lanes: 16 (AVX-512), 8 (AVX/AVX2), 4 (SSE)."""
        return self.simd_bits // 32

    @property
    def vector_registers(self) -> int:
        """Architectural vector registers: 32 with AVX-512 and on aarch64, otherwise 16."""
        return 32 if ("avx512f" in self.features or self.kind == "arm") else 16

    @property
    def has_fma(self) -> bool:
        return "fma" in self.features or "avx512f" in self.features

    @property
    def is_host(self) -> bool:
        """Whether code for this target runs on this machine (x86 builds for the host CPU)."""
        return self.kind == "x86" and self.mtriple in (None, "") or (self.kind == "x86" and "x86_64" in
                                                                      str(self.mtriple))

    def with_threads(self, threads: int) -> CompileTarget:
        return replace(self, threads=threads)

    @property
    def llvm_mattr(self) -> list[str]:
        """LLVM features the kernels rely on, stated explicitly (an unknown ``mcpu`` may imply none)."""
        if self.kind == "arm":
            return ["+neon"]
        if self.kind == "wasm":
            return ["+simd128"]
        wanted = [("avx2", "+avx2"), ("fma", "+fma"), ("avx512f", "+avx512f"), ("avx512vl", "+avx512vl"),
                  ("avx512bw", "+avx512bw"), ("avx512dq", "+avx512dq")]
        return [attr for flag, attr in wanted if flag in self.features]

    def tvm_target(self):
        """The TVM ``Target`` (LLVM, JSON-dict form) for this description."""
        config: dict = {"kind": "llvm", "num-cores": self.threads}
        if self.kind != "wasm" and self.mcpu != "generic":
            config["mcpu"] = self.mcpu
        if self.llvm_mattr:
            config["mattr"] = self.llvm_mattr
        if self.mtriple:
            config["mtriple"] = self.mtriple
        return _tvm.Target(config)


def detect_x86(threads: int | None = None) -> CompileTarget:
    """Describe the host x86 CPU: LLVM's CPU name, ``/proc/cpuinfo`` flags, ``threads`` (default: all CPUs)."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i686", "i386"):
        raise RuntimeError(f"detect_x86() called on a {machine!r} host")
    host = dict(_tvm.Target.from_device(_tvm.cpu_device()).export())
    flags = _cpuinfo_flags()
    mcpu = str(host.get("mcpu") or "x86-64-v3")
    return CompileTarget(
        kind="x86",
        mcpu=mcpu,
        features=flags or _features_from_mcpu(mcpu),
        threads=threads or os.cpu_count() or 1,
        mtriple=host.get("mtriple"),
    )


def arm_target(cpu: str = "generic", threads: int | None = None) -> CompileTarget:
    """aarch64-linux-gnu with NEON for the core ``cpu`` (``ValueError`` listing the known cores otherwise)."""
    return CompileTarget(kind="arm", mcpu=cpu or "generic", threads=threads or 1)


def wasm_target() -> CompileTarget:
    """wasm32 with SIMD128, one thread."""
    return CompileTarget(kind="wasm", mcpu="generic", threads=1)


def host_shadow_of(target: CompileTarget) -> CompileTarget:
    """An x86 target for this host with ``target``'s vector width and threads.

    Schedules and constant layouts depend only on (vector lanes, registers, threads), so a model built for this
    target runs the same kernels, in the same order, on the same buffers as the ``target`` build: used to trace
    the kernel sequence on the host (WebAssembly AOT driver) and to replay device kernels.
    """
    features = {4: frozenset({"sse2", "sse4_2"}), 8: frozenset({"sse4_2", "avx", "avx2", "fma"})}.get(
        target.vector_lanes, frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl"}))
    mcpu = {4: "x86-64-v2", 8: "x86-64-v3"}.get(target.vector_lanes, "x86-64-v4")
    shadow = CompileTarget(kind="x86", mcpu=mcpu, features=features, threads=target.threads)
    if (shadow.vector_lanes, shadow.vector_registers) != (target.vector_lanes, target.vector_registers):
        raise ValueError(f"no x86 shadow with {target.vector_lanes} lanes and {target.vector_registers} registers")
    return shadow


def make_target(name: str = "x86", threads: int | None = None, cpu: str | None = None) -> CompileTarget:
    """A CPU :class:`CompileTarget` by family name; ``ValueError`` for unknown names."""
    if name == "x86":
        return detect_x86(threads)
    if name == "arm":
        return arm_target(cpu or "generic", threads)
    if name == "wasm":
        return wasm_target()
    raise ValueError(_unknown_message(name))


def _unknown_message(name: str) -> str:
    planned = " (planned, not implemented yet)" if name in PLANNED_TARGETS else ""
    return (f"unknown target {name!r}{planned}; known targets: {', '.join(KNOWN_TARGETS)}; "
            f"planned: {', '.join(PLANNED_TARGETS)}")
