"""What every structure form provides, and the records forms exchange (:class:`Encoded`, :class:`Option`).

A form stores a weight ``W[N, K]`` (the ``(output, reduction)`` view) compressed as ``(values, indices, dims)``;
decoding is exact. Forms also own the target-independent *packings* kernels read (row entries, blocks, groups),
computed from the encoded operand, never from a re-densified matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

#: A format storing at least this fraction of the weight is a dense kernel with index overhead: not a candidate.
MAX_STORED_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A weight ``[N, K]`` in one form: the ``values, indices, dims`` inputs of its ``ai.sparseforge`` op."""

    fmt: str
    values: np.ndarray
    indices: np.ndarray
    dims: np.ndarray
    block: tuple[int, int] | None = None
    nm: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.dims[0]), int(self.dims[1])

    @property
    def nnz(self) -> int:
        """Stored nonzeros (explicit zeros in ``values`` not counted)."""
        return int(np.count_nonzero(self.values))


@dataclasses.dataclass(frozen=True)
class Option:
    """One parameterization a form offers a layer.

    ``stored``: fraction of the weight the form would store (element density for CSR, block density for BSR,
    n/m for N:M); ``label``: for people ("bsr 4x1"); ``variant_key``: the calibration table's key ("bsr4x1").
    """

    form: str
    stored: float
    label: str
    variant_key: str
    block: tuple[int, int] | None = None
    nm: tuple[int, int] | None = None
    nnz_blocks: int | None = None

    def predict_kwargs(self) -> dict:
        """Keyword arguments of ``CostModel.predict`` describing this option."""
        return dict(block=self.block, nm=self.nm, nnz_blocks=self.nnz_blocks)


class Form:
    """A structure form. Subclasses set ``name`` and implement the methods below (all NumPy, exact)."""

    name: str = ""

    def encode(self, weight: np.ndarray, *, block: tuple[int, int] | None = None,
               nm: tuple[int, int] | None = None) -> Encoded:
        """Compress ``weight [N, K]``; ``decode(encode(w)) == w`` bit for bit."""
        raise NotImplementedError

    def wrap(self, values: np.ndarray, indices: np.ndarray, dims: np.ndarray) -> Encoded:
        """The :class:`Encoded` of stored operands (parameters such as the block shape read from the arrays)."""
        return Encoded(self.name, values, indices, np.asarray(dims, np.int64))

    def decode(self, enc: Encoded) -> np.ndarray:
        """The dense ``[N, K]`` weight (NumPy reference of the ONNX function body)."""
        raise NotImplementedError

    def entries(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nonzero entries ``(rows int64, cols int64, vals float32)`` in row-major order, zeros dropped.

        The same entries, in the same order, as ``np.nonzero`` of the dense weight."""
        raise NotImplementedError

    def weight_body(self, b, values, indices, dims):
        """ONNX body nodes (through ``b``, a :class:`sparseforge.ir.forms.onnx_body.Builder`) computing the dense
        ``[N, K]`` weight; mirrors :meth:`decode`."""
        raise NotImplementedError

    def options(self, matrix: np.ndarray, facts: Mapping[str, Any] | None = None) -> list[Option]:
        """Every parameterization this form can store ``matrix`` in (before the stored-fraction cut).

        ``facts``: the analysis facts of the weight (``{fact name: value}``, see ``passes/analysis``) when they were
        computed; a form reads the fact it needs from there (``density``, ``blocks``, ``nm``) instead of measuring
        the matrix again, and measures the matrix only when the fact is absent."""
        raise NotImplementedError

    def option(self, variant_key: str) -> Option | None:
        """The option a calibration variant key names (``stored`` left at 0), or None if not this form's."""
        raise NotImplementedError

    #: True when every option stores a fixed fraction (N:M): a cost table needs one point, not a density grid.
    fixed_stored: bool = False

    def stored_fraction(self, n: int, k: int, density: float, *, block: tuple[int, int] | None = None,
                        nm: tuple[int, int] | None = None, nnz_blocks: int | None = None) -> float:
        """Fraction of an ``[n, k]`` weight this form stores, from a cost model's ``predict`` arguments (element
        density by default)."""
        return density

    def random_mask(self, n: int, k: int, density: float, option: Option, rng: np.random.Generator) -> np.ndarray:
        """A random ``[n, k]`` keep-mask with this structure (calibration weights)."""
        raise NotImplementedError


_REGISTERED: dict[str, Form] = {}


def register(form: Form) -> Form:
    """Record ``form`` under its name (each form module registers its instance)."""
    _REGISTERED[form.name] = form
    return form


def form_of(enc: Encoded) -> Form:
    """The form an encoded operand is stored in."""
    return _REGISTERED[enc.fmt]


def index_dtype(limit: int) -> str:
    """Narrowest index dtype for indices in ``[0, limit)``: uint16 up to 65536, else int32."""
    return "uint16" if limit <= 65536 else "int32"


def pointers(keys: np.ndarray, count: int) -> np.ndarray:
    """int32 ``ptr[count + 1]``: entries with key ``i`` (keys sorted ascending) are ``ptr[i]:ptr[i+1]``."""
    return np.searchsorted(np.asarray(keys, np.int64), np.arange(count + 1), side="left").astype(np.int32)
