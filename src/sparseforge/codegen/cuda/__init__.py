"""CUDA back end: hand-scheduled sparse kernels (fp32 CUDA cores), Relax build/export for an SM architecture,
running and benchmarking on a GPU.

* :mod:`.kernels` -- ``csr_matmul``, ``bsr_matmul``, ``nm_matmul``, ``sparse_conv1x1`` (same signatures and
  :class:`~sparseforge.codegen.kernels.SparseKernel` records as the CPU builders).
* :mod:`.build` -- ``cuda_target``, ``build``, ``export``, ``device_code_info`` (works without a GPU: nvcc +
  a stub driver, see :mod:`._driver`).
* :mod:`.graph` -- ``call_kernel`` / ``mlp_module`` for Relax graphs.
* :mod:`.device` -- ``gpu_available``, kernel/model runners, ``time_gpu``; :mod:`.bench` -- the benchmark script
  (``python -m sparseforge.codegen.cuda.bench --json``).

TVM is imported lazily (through :mod:`sparseforge.codegen._tvm`) by the functions that need it.
"""

from .build import DEFAULT_ARCH, KNOWN_SM, arch_of, build, check_arch, cuda_target, device_code_info, export
from .device import KernelRunner, ModelRunner, gpu_available, run_kernel, run_model
from .graph import call_kernel, mlp_module
from .kernels import SMALL_M, bsr_matmul, csr_matmul, nm_matmul, sparse_conv1x1

__all__ = [
    "DEFAULT_ARCH",
    "KNOWN_SM",
    "KernelRunner",
    "ModelRunner",
    "SMALL_M",
    "arch_of",
    "bsr_matmul",
    "build",
    "call_kernel",
    "check_arch",
    "csr_matmul",
    "cuda_target",
    "device_code_info",
    "export",
    "gpu_available",
    "mlp_module",
    "nm_matmul",
    "run_kernel",
    "run_model",
    "sparse_conv1x1",
]
