"""Target registry: one module per target, each exporting ``BACKEND`` (a :class:`~.base.Backend`).

Adding a target is one module here plus one line in ``_MODULES``.
"""

from __future__ import annotations

import importlib

from sparseforge.errors import TargetError

from .base import Backend

_MODULES = {
    "x86": "sparseforge.codegen.targets.x86",
    "arm": "sparseforge.codegen.targets.arm",
    "wasm": "sparseforge.codegen.targets.wasm",
    "cuda": "sparseforge.codegen.targets.cuda",
}
KNOWN = tuple(_MODULES)


def get_backend(name: str) -> Backend:
    """The backend of target ``name``; a clear error listing the known targets otherwise."""
    if name not in _MODULES:
        raise TargetError(f"unknown target '{name}'", hint=f"known targets: {', '.join(KNOWN)}")
    return importlib.import_module(_MODULES[name]).BACKEND


__all__ = ["KNOWN", "Backend", "get_backend"]
