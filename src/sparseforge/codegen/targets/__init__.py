"""Target registry: one module per device family, each exporting ``TARGET`` (a :class:`~.base.Target`).

Adding a target is one module here plus one line in ``_FAMILIES``.
"""

from __future__ import annotations

from sparseforge.errors import TargetError

from . import arm, cuda, wasm, x86
from .base import Target

_FAMILIES: dict[str, Target] = {t.name: t for t in (x86.TARGET, arm.TARGET, wasm.TARGET, cuda.TARGET)}
KNOWN = tuple(_FAMILIES)


def get_target(name: str) -> Target:
    """The target family ``name``; a clear error listing the known families otherwise."""
    if name not in _FAMILIES:
        raise TargetError(f"unknown target '{name}'", hint=f"known targets: {', '.join(KNOWN)}")
    return _FAMILIES[name]


__all__ = ["KNOWN", "Target", "get_target"]
