"""Make TVM embed nvcc-compiled CUDA binaries, with or without a GPU driver.

TVM's CUDA runtime library (``libtvm_runtime_cuda.so``: CUDA module, compile callback, device API) links against
``libcuda.so.1``. Without a driver it does not load, and ``tvm.compile`` keeps only CUDA C source. Here:

* a real ``libcuda.so.1`` is used when it loads;
* otherwise a stub driver (every entry point returns CUDA_ERROR_NO_DEVICE) is compiled with the C compiler into a
  cache folder and loaded ``RTLD_GLOBAL`` first, so the soname is satisfied; then the TVM library is loaded (also
  after ``import tvm`` already gave up on it). Code generation works; nothing can run.
* ``tvm_callback_cuda_compile`` is overridden for the duration of a build (:func:`nvcc_callback`): nvcc, no fast
  math (IEEE expf/erff/tanhf), a fatbin holding SASS *and* PTX for the requested architecture. This replaces
  ``TVM_CUDA_COMPILE_MODE=nvcc`` (fast math, SASS only) and NVRTC (needs ``cuda-bindings``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

from .._tvm import tvm

STUB_SYMBOLS = ("cuInit", "cuDriverGetVersion", "cuDeviceGet", "cuDeviceGetCount", "cuDeviceGetName",
                "cuDeviceGetAttribute", "cuFuncSetAttribute", "cuFuncGetAttribute", "cuLaunchKernel",
                "cuLaunchKernelEx", "cuModuleGetFunction", "cuModuleGetGlobal", "cuModuleLoadData",
                "cuModuleLoadDataEx", "cuModuleUnload", "cuTensorMapEncodeTiled", "cuGetProcAddress",
                "cuGetProcAddress_v2", "cuCtxGetCurrent", "cuCtxSetCurrent", "cuDevicePrimaryCtxRetain")
STUB_SOURCE = "\n".join(
    ["/* sparseforge stub libcuda.so.1: code generation only; every call fails with CUDA_ERROR_NO_DEVICE. */"]
    + [f"int {s}() {{ return 100; }}" for s in STUB_SYMBOLS]
    + ['int cuGetErrorName(int e, const char** s) { *s = "CUDA_ERROR_NO_DEVICE (sparseforge stub)"; return 0; }',
       'int cuGetErrorString(int e, const char** s) { *s = "no CUDA driver (sparseforge stub libcuda)"; return 0; }',
       ""])

_state = {"driver": None}  # "real" | "stub" once loaded


class CudaToolError(RuntimeError):
    """A CUDA tool (nvcc, the C compiler, TVM's CUDA runtime library) is missing or failed."""


def _cache_dir() -> str:
    base = os.environ.get("SPARSEFORGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sparseforge")
    path = os.path.join(base, "cuda-stub")
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    path = os.path.join(tempfile.gettempdir(), f"sparseforge-cuda-stub-{os.getuid()}")
    os.makedirs(path, exist_ok=True)
    return path


def build_stub_driver() -> str:
    """Compile (once, cached) the stub ``libcuda.so.1``; returns its path."""
    folder = _cache_dir()
    path = os.path.join(folder, "libcuda.so.1")
    src_path = os.path.join(folder, "libcuda_stub.c")
    if os.path.exists(path) and os.path.exists(src_path) and open(src_path).read() == STUB_SOURCE:
        return path
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if not cc:
        raise CudaToolError("no C compiler (gcc/cc/clang) to build the stub libcuda.so.1; install one or a driver")
    fd, tmp_src = tempfile.mkstemp(suffix=".c", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(STUB_SOURCE)
    tmp_lib = tmp_src[:-2] + ".so"
    proc = subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", tmp_src, "-o", tmp_lib],
                          capture_output=True, text=True)
    if proc.returncode:
        raise CudaToolError(f"building the stub libcuda.so.1 with {cc} failed:\n{proc.stdout}{proc.stderr}")
    os.replace(tmp_lib, path)  # atomic: concurrent builders never see a partial file
    os.replace(tmp_src, src_path)
    return path


def _preload_cudart() -> None:
    """libtvm_runtime_cuda needs libcudart.so.13; preload it from CUDA_HOME or pip's nvidia packages if the
    loader cannot find it."""
    try:
        ctypes.CDLL("libcudart.so.13", mode=ctypes.RTLD_GLOBAL)
        return
    except OSError:
        pass
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    pats = [os.path.join(r, d, "libcudart.so.13*") for r in roots if r for d in ("lib64", "lib")]
    pats += [os.path.join(p, "nvidia", "*", "lib", "libcudart.so.13*") for p in sys.path if p]
    pats += [os.path.join(p, "nvidia", "cuda_runtime", "lib", "libcudart.so.13*") for p in sys.path if p]
    for pat in pats:
        for cand in sorted(glob.glob(pat)):
            with contextlib.suppress(OSError):
                ctypes.CDLL(cand, mode=ctypes.RTLD_GLOBAL)
                return


def driver_kind() -> str | None:
    """"real" or "stub" once :func:`ensure_cuda_runtime` loaded one, else None."""
    return _state["driver"]


def real_driver_loadable() -> bool:
    """True if a real libcuda.so.1 can be loaded (False once the stub is loaded: it would shadow the name)."""
    if _state["driver"] == "stub":
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def ensure_cuda_runtime() -> str:
    """Load TVM's CUDA runtime library (real driver or stub). Returns "real" or "stub"; raises CudaToolError."""
    if _state["driver"] is None and tvm.runtime.enabled("cuda"):
        _state["driver"] = "real"  # loaded at import tvm: a real driver is present
    if _state["driver"] is not None and tvm.runtime.enabled("cuda"):
        return _state["driver"]
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        kind = "real"
    except OSError:
        ctypes.CDLL(build_stub_driver(), mode=ctypes.RTLD_GLOBAL)
        kind = "stub"
    _state["driver"] = kind
    _preload_cudart()
    libs = tvm.base._LOADED_LIBS
    folder = os.path.dirname(os.path.realpath(libs["tvm_runtime"]._name))
    path = os.path.join(folder, "libtvm_runtime_cuda.so")
    try:
        libs["tvm_runtime_cuda"] = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    except OSError as exc:
        raise CudaToolError(f"cannot load TVM's CUDA runtime {path}: {exc}") from exc
    if not tvm.runtime.enabled("cuda"):
        raise CudaToolError("TVM's CUDA runtime loaded but tvm.runtime.enabled('cuda') is still False")
    return kind


# ------------------------------------------------------------------------------------------------------ nvcc


def find_nvcc() -> str:
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"),
                 *(os.path.join(r, "bin", "nvcc") for r in (os.environ.get("CUDA_HOME"), "/usr/local/cuda") if r)):
        if cand and os.path.exists(cand):
            return cand
    raise CudaToolError("nvcc not found (set NVCC or CUDA_HOME, or put it on PATH)")


@functools.lru_cache(maxsize=None)
def nvcc_gpu_codes(nvcc: str | None = None) -> tuple[str, ...]:
    """Real architectures this nvcc can emit SASS for (``nvcc --list-gpu-code``), e.g. ("sm_75", ..., "sm_121")."""
    out = subprocess.run([nvcc or find_nvcc(), "--list-gpu-code"], capture_output=True, text=True).stdout
    return tuple(sorted(set(re.findall(r"sm_\d+[a-z]?", out)), key=lambda s: (len(s), s)))


def gencode(arch: str) -> list[str]:
    """``-gencode`` flags for SASS and PTX of ``arch`` ("sm_90", "sm_90a", "sm_100f" ...)."""
    v = arch[3:]
    return ["-gencode", f"arch=compute_{v},code=[sm_{v},compute_{v}]"]


def nvcc_compile(code: str, arch: str, *, fmt: str = "fatbin", fast_math: bool = False,
                 options: list[str] | None = None) -> bytes:
    """Compile CUDA C ``code`` with nvcc for ``arch``; fmt "fatbin" (SASS + PTX), "cubin" or "ptx"."""
    nvcc = find_nvcc()
    base = re.sub(r"[af]$", "", arch)
    codes = nvcc_gpu_codes(nvcc)
    if codes and base not in codes:
        raise CudaToolError(f"{nvcc} cannot compile for {arch}; it supports {', '.join(codes)}")
    if fmt == "fatbin":
        arch_flags = gencode(arch)
    elif fmt == "ptx":
        arch_flags = ["-arch", f"compute_{arch[3:]}"]
    elif fmt == "cubin":
        arch_flags = ["-arch", arch]
    else:
        raise ValueError(f"fmt must be fatbin, cubin or ptx, got {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="sparseforge-nvcc-") as tmp:
        src = os.path.join(tmp, "kernels.cu")
        out = os.path.join(tmp, f"kernels.{fmt}")
        with open(src, "w") as f:
            f.write(code)
        cmd = [nvcc, f"--{fmt}", "-O3", *arch_flags, "-U__CUDA_NO_HALF_OPERATORS__",
               "-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_BFLOAT16_OPERATORS__",
               "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "--expt-relaxed-constexpr"]
        cmd += (["--use_fast_math"] if fast_math else []) + list(options or []) + ["-o", out, src]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise CudaToolError(f"nvcc failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
        with open(out, "rb") as f:
            return f.read()


@contextlib.contextmanager
def nvcc_callback(arch: str, *, fast_math: bool = False):
    """Within the block, TVM compiles CUDA device code with :func:`nvcc_compile` for ``arch``."""
    name = "tvm_callback_cuda_compile"
    old = tvm.get_global_func(name, allow_missing=True)

    def callback(code, *_):
        return bytearray(nvcc_compile(code, arch, fast_math=fast_math))

    tvm.register_global_func(name, callback, override=True)
    try:
        yield
    finally:
        if old is not None:
            tvm.register_global_func(name, old, override=True)
