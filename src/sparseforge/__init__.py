"""sparseforge: find sparsity and structure in trained networks and turn it into speed.

Public API: :func:`load` (any supported model -> ``onnx_ir.Model``), :func:`inspect`, :func:`export`,
:func:`prune`; the CLI is ``sparseforge`` (see ``sparseforge --help``).
"""

from sparseforge._version import __version__
from sparseforge.errors import SparseforgeError
from sparseforge.ir.frontend import load


def __getattr__(name: str):  # lazy: keeps ``import sparseforge`` cheap
    if name in ("inspect", "export", "prune"):
        from sparseforge import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = ["SparseforgeError", "__version__", "export", "inspect", "load", "prune"]
