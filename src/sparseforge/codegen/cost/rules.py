"""Rule-based cost model for targets without a device to measure on (ARM, WebAssembly, CUDA here).

A sparse kernel is predicted to run in ``dense_time * stored_fraction / crossover``: it breaks even at the
target's crossover density for that kernel family and wins below it. Stored fraction is the element density for
CSR, the block density for BSR, and N/M for N:M. Crossovers are conservative and come from published
measurements, not from this machine:

* 1x1 convolutions on ARM and WebAssembly: XNNPACK's sparse inference needs at least 2/3 zeros (crossover 1/3);
  TVM's ARM sparse conv lost to dense below ~40% sparsity (PR #8065). We use 0.33.
* sparse matmul on ARM / WebAssembly: 0.3 for CSR, 0.4 for BSR (blocks vectorize better).
* CUDA (fp32 CUDA cores, no sparse tensor cores), from sparseforge's kernels against cuBLAS on an H100 at 90%
  sparsity (4096x4096, 768x3072): sparse ran 4x faster at M <= 8 (crossover ~0.4) but 0.74-1.2x at M = 128
  (crossover ~0.07 for CSR, ~0.1 for BSR).
* N:M on CPUs and on fp32 GPUs: no evidence of a win anywhere (sparsity-forms.md): never chosen.

``sparseforge bench --target arm --rpc HOST:PORT`` measures on a real board.
"""

from __future__ import annotations

import dataclasses

from sparseforge.ir import forms
from sparseforge.ir.conv import is_conv_key

#: (kernel, kind) -> crossover density, or a list of (largest M, crossover) steps.
_CROSSOVERS: dict[str, dict[tuple[str, str], float | list[tuple[int, float]]]] = {
    "arm": {("csr", "matmul"): 0.3, ("bsr", "matmul"): 0.4, ("csr", "conv1x1"): 0.33, ("bsr", "conv1x1"): 0.4},
    "wasm": {("csr", "matmul"): 0.3, ("bsr", "matmul"): 0.4, ("csr", "conv1x1"): 0.33, ("bsr", "conv1x1"): 0.4},
    "cuda": {("csr", "matmul"): [(16, 0.4), (1 << 62, 0.07)], ("bsr", "matmul"): [(16, 0.4), (1 << 62, 0.1)],
             ("csr", "conv1x1"): [(16, 0.4), (1 << 62, 0.07)], ("bsr", "conv1x1"): [(16, 0.4), (1 << 62, 0.1)]},
    "x86": {("csr", "matmul"): 0.25, ("bsr", "matmul"): 0.35, ("csr", "conv1x1"): 0.25, ("bsr", "conv1x1"): 0.35},
}


@dataclasses.dataclass
class RuleCostModel:
    """Relative-time cost model (unit: dense multiply-adds) from per-target crossover densities."""

    target: str
    crossovers: dict
    unit: str = "relative"

    @classmethod
    def for_target(cls, target: str) -> RuleCostModel:
        return cls(target, dict(_CROSSOVERS.get(target, {})))

    def crossover(self, kernel: str, kind: str, m: int = 1) -> float | None:
        """A conv geometry key (:meth:`~sparseforge.ir.conv.ConvSpec.key`) uses the 1x1 conv crossovers: the
        direct conv kernel is the same panel design."""
        entry = self.crossovers.get((kernel, "conv1x1" if is_conv_key(kind) else kind))
        if entry is None or isinstance(entry, float):
            return entry
        return next((value for largest_m, value in entry if m <= largest_m), entry[-1][1])

    def predict(self, kernel: str, m: int, n: int, k: int, *, density: float = 1.0,
                block: tuple[int, int] | None = None, nm: tuple[int, int] | None = None,
                nnz_blocks: int | None = None, kind: str = "matmul") -> float | None:
        dense = float(m) * n * k
        if kernel == "dense":
            return dense
        crossover = self.crossover(kernel, kind, m)
        if crossover is None:
            return None
        stored = forms.get(kernel).stored_fraction(n, k, density, block=block, nm=nm, nnz_blocks=nnz_blocks)
        return dense * stored / crossover
