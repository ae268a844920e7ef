"""Run aarch64 artifacts under ``qemu-aarch64``: TVM's C++ runtime from the aarch64 wheels + a small VM runner.

The aarch64 ``libtvm_runtime.so`` / ``libtvm_ffi.so`` come from the aarch64 PyPI wheels of exactly the installed
TVM versions (``pip download``); ``vm_runner`` (``runtime/native/vm_runner.cc``) is cross-compiled against the
installed headers. Both are cached under ``$SPARSEFORGE_CACHE/aarch64-runtime/<versions>/``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from sparseforge.errors import SparseforgeError

CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
_RUNNER_SOURCE = Path(__file__).parent / "native" / "vm_runner.cc"


def _cache_root() -> Path:
    return Path(os.environ.get("SPARSEFORGE_CACHE", Path.home() / ".cache" / "sparseforge"))


def tools_available() -> list[str]:
    """Names of the missing tools (empty when everything needed is installed)."""
    missing = [t for t in (CXX, QEMU) if shutil.which(t) is None]
    if not os.path.isdir(SYSROOT):
        missing.append("libc6-dev-arm64-cross")
    return missing


def require_tools() -> None:
    missing = tools_available()
    if missing:
        raise SparseforgeError(f"cannot run aarch64 code here: missing {', '.join(missing)}",
                               hint="apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu "
                                    "libc6-dev-arm64-cross qemu-user")


def _versions() -> tuple[str, str]:
    return importlib.metadata.version("apache-tvm"), importlib.metadata.version("apache-tvm-ffi")


def _include_dirs() -> list[str]:
    from sparseforge.codegen import _tvm  # TVM is optional: only to build the runner against its headers

    return [os.path.join(os.path.dirname(_tvm.tvm_ffi.__file__), "include"),
            os.path.join(os.path.dirname(_tvm.tvm.__file__), "include")]


def runtime_dir() -> Path:
    """Folder holding ``lib/libtvm_runtime.so``, ``lib/libtvm_ffi.so`` and ``vm_runner`` for aarch64."""
    require_tools()
    tvm_version, ffi_version = _versions()
    source_hash = hashlib.sha256(_RUNNER_SOURCE.read_bytes()).hexdigest()[:12]
    root = _cache_root() / "aarch64-runtime" / f"tvm-{tvm_version}-ffi-{ffi_version}-{source_hash}"
    runner = root / "vm_runner"
    if runner.is_file() and (root / "lib" / "libtvm_runtime.so").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    lib = root / "lib"
    lib.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
               "--python-version", "3.11", f"apache-tvm=={tvm_version}", f"apache-tvm-ffi=={ffi_version}", "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SparseforgeError(f"downloading the aarch64 TVM runtime failed: {result.stderr.strip()[-500:]}",
                                   hint="the aarch64 wheels of apache-tvm and apache-tvm-ffi come from PyPI")
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as z:
                for member in ("tvm/lib/libtvm_runtime.so", "tvm_ffi/lib/libtvm_ffi.so"):
                    if member in z.namelist():
                        (lib / os.path.basename(member)).write_bytes(z.read(member))
    includes = [f"-I{d}" for d in _include_dirs()]
    result = subprocess.run([CXX, "-std=c++17", "-O1", *includes, str(_RUNNER_SOURCE), f"-L{lib}",
                             "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN/lib",
                             "-o", str(runner) + ".tmp"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SparseforgeError(f"building the aarch64 VM runner failed: {result.stderr.strip()[-800:]}")
    os.replace(str(runner) + ".tmp", runner)
    return root


def run_vm(library: Path, inputs: list[np.ndarray], *, threads: int = 1, timeout: int = 600) -> list[np.ndarray]:
    """Run ``main`` of an aarch64 Relax VM library under qemu; returns the outputs."""
    root = runtime_dir()
    with tempfile.TemporaryDirectory() as tmp:
        specs = []
        for i, array in enumerate(inputs):
            array = np.require(np.asarray(array), requirements="C")  # keeps 0-d arrays 0-d
            path = Path(tmp) / f"in{i}.bin"
            path.write_bytes(array.tobytes())
            specs.append(f"{array.dtype.name}:{','.join(str(d) for d in array.shape)}:{path}")
        lib_copy = Path(tmp) / "model.so"
        shutil.copy(library, lib_copy)
        cmd = [QEMU, "-L", SYSROOT, str(root / "vm_runner"), str(lib_copy), str(Path(tmp) / "out"), str(threads),
               *specs]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise SparseforgeError(f"the aarch64 artifact failed under qemu: {result.stderr.strip()[-800:]}")
        outputs = []
        for line in result.stdout.splitlines():
            if not line.startswith("output "):
                continue
            _, index, dtype, *rest = line.split()  # a 0-d output prints no dims
            dims = rest[0] if rest else ""
            shape = [int(d) for d in dims.split(",")] if dims else []
            data = (Path(tmp) / f"out.{index}.bin").read_bytes()
            outputs.append(np.frombuffer(data, np.dtype(dtype)).reshape(shape).copy())
        return outputs
