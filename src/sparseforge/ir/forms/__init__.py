"""Structure forms: one module per compressed weight format, and the registry of them.

Each form module (:mod:`.csr`, :mod:`.bsr`, :mod:`.nm`) owns its encoding and decoding (exact), the ONNX
function body that decompresses it, the options it offers a layer, its calibration keys and random weights, and
the target-independent packings kernels read. :data:`FORMS` lists the forms in the order a decision tries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import bsr, csr
from . import nm as _nm
from .base import MAX_STORED_FRACTION, Encoded, Form, Option, index_dtype, pointers

#: name -> form, in decision order.
FORMS: dict[str, Form] = {f.name: f for f in (csr.FORM, bsr.FORM, _nm.FORM)}


def get(name: str) -> Form:
    """The form called ``name`` (ValueError if unknown)."""
    try:
        return FORMS[name]
    except KeyError:
        raise ValueError(f"unknown sparse format {name!r}") from None


def encode(weight: np.ndarray, fmt: str, *, block: tuple[int, int] = (4, 1), nm: tuple[int, int] = (2, 4)
           ) -> Encoded:
    """Compress ``weight [N, K]`` in form ``fmt``; exact."""
    return get(fmt).encode(weight, block=block, nm=nm)


def encode_option(weight: np.ndarray, option: Option) -> Encoded:
    """Compress ``weight`` as ``option`` says."""
    return get(option.form).encode(weight, block=option.block, nm=option.nm)


def wrap(fmt: str, values: np.ndarray, indices: np.ndarray, dims: np.ndarray) -> Encoded:
    """The :class:`Encoded` of stored ``values, indices, dims`` of form ``fmt``."""
    return get(fmt).wrap(values, indices, dims)


def decode(values: np.ndarray, indices: np.ndarray, dims: np.ndarray, fmt: str) -> np.ndarray:
    """Dense ``[N, K]`` weight of stored operands."""
    form = get(fmt)
    return form.decode(form.wrap(values, indices, dims))


def all_options(matrix: np.ndarray, facts: Mapping[str, Any] | None = None) -> list[Option]:
    """Every option of every form for ``matrix``, in decision order (``facts``: see :meth:`Form.options`)."""
    return [option for form in FORMS.values() for option in form.options(matrix, facts)]


def options(matrix: np.ndarray, facts: Mapping[str, Any] | None = None) -> list[Option]:
    """The options worth considering: every N:M listed is fully complied with; formats that would store
    :data:`MAX_STORED_FRACTION` or more of the weight are left out."""
    return [option for option in all_options(matrix, facts) if option.stored < MAX_STORED_FRACTION]


def option_for(variant_key: str) -> Option:
    """The option a calibration variant key names (``"csr"``, ``"bsr4x1"``, ``"nm2:4"``)."""
    for form in FORMS.values():
        option = form.option(variant_key)
        if option is not None:
            return option
    raise ValueError(f"unknown kernel variant {variant_key!r}")


def variant_key(kernel: str, block: tuple[int, int] | None = None, nm: tuple[int, int] | None = None) -> str:
    """Calibration key of a kernel: ``"csr"``, ``"bsr4x1"``, ``"nm2:4"`` (``"dense"`` and others unchanged)."""
    if kernel == bsr.NAME:
        return bsr.variant_key(block)
    if kernel == _nm.NAME:
        return _nm.variant_key(nm)
    return kernel


def random_weight(n: int, k: int, density: float, option: Option | str, *, seed: int = 0) -> np.ndarray:
    """A random ``[n, k]`` float32 weight with ``option``'s structure and (element or block) density."""
    option = option_for(option) if isinstance(option, str) else option
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    return w * get(option.form).random_mask(n, k, density, option, rng)


__all__ = ["FORMS", "MAX_STORED_FRACTION", "Encoded", "Form", "Option", "all_options", "decode", "encode",
           "encode_option", "get", "index_dtype", "option_for", "options", "pointers", "random_weight",
           "variant_key", "wrap"]
