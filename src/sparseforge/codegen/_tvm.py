"""The only module that imports Apache TVM.

TVM 0.27 renamed much of its Python API (``tvm.tir`` -> ``tvm.tirx``, ``tvm.dlight`` -> ``tvm.s_tir.dlight``,
JSON-dict targets only). Everything else in sparseforge imports TVM names from here, so the next rename is a
one-file fix. Importing this module costs about 1.5 s: the ``codegen`` floor imports it at module level, and the
floors above import ``codegen`` only inside the functions that need it (TVM is an optional dependency).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

try:
    import tvm
    import tvm_ffi
    from tvm import relax, s_tir, te, tirx, topi
    from tvm.relax.frontend.onnx import onnx_frontend
    from tvm.s_tir import dlight
    from tvm.support import cc
    from tvm.sym import Analyzer  # tvm.arith in TVM < 0.27
    from tvm.script import ir as I  # noqa: E741
    from tvm.script import relax as R
    from tvm.script import tirx as T
    from tvm.script.ir_builder.base import IRBuilder
    from tvm.script.ir_builder.base import IRBuilderFrame
    from tvm.script.parser.core import doc as script_doc
    from tvm.script.parser.core.evaluator import _eval_op as script_eval_op  # the parser's operator semantics
    from tvm.tirx.script import builder as tir_builder
except ImportError as exc:  # pragma: no cover - exercised only without the [tvm] extra
    raise ImportError(
        "sparseforge code generation needs Apache TVM: pip install 'apache-tvm==0.27.0.post1' "
        "'apache-tvm-ffi==0.1.14.post0' (or `make install`)"
    ) from exc

Target = tvm.target.Target
logger = logging.getLogger("sparseforge.tvm")


@contextlib.contextmanager
def native_logs_to_debug() -> Iterator[None]:
    """Route what TVM's C++ side writes to stderr inside the block (``LOG(WARNING)`` lines such as "BlockBuilder
    destroyed with remaining blocks") to the ``sparseforge.tvm`` logger at DEBUG level: they are TVM's internals,
    not the user's concern, and ``--debug`` shows them. Objects freed in the block are collected before it ends,
    so destructor warnings are caught too."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            gc.collect()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.strip():
            logger.debug("%s", line)
IRModule = tvm.IRModule


def structural_equal(a, b, map_free_vars: bool = False) -> bool:
    """Structural equality of TVM IR objects (0.27 moved it out of ``tvm.ir`` into ``tvm_ffi``)."""
    return bool(tvm_ffi.structural_equal(a, b, map_free_vars=map_free_vars))


def cross_linker(cxx: str):
    """An ``export_library`` link function for the cross compiler ``cxx``, whose target triple (for the object
    that packs the imported modules, ``devc.o``) is the compiler's own (``cxx -dumpmachine``), not the host's."""
    return cc.cross_compiler(cxx, get_target_triple=cc.get_target_by_dump_machine(cxx))


def cpu_device():
    return tvm.cpu(0)


def to_tvm_tensor(array, device=None):
    """A TVM runtime tensor holding a copy of the NumPy ``array``."""
    return tvm.runtime.tensor(array, device or tvm.cpu(0))


__all__ = [
    "Analyzer",
    "I",
    "IRBuilder",
    "IRBuilderFrame",
    "native_logs_to_debug",
    "IRModule",
    "R",
    "T",
    "Target",
    "cpu_device",
    "dlight",
    "onnx_frontend",
    "relax",
    "structural_equal",
    "s_tir",
    "script_doc",
    "script_eval_op",
    "te",
    "tir_builder",
    "tirx",
    "to_tvm_tensor",
    "topi",
    "tvm",
    "tvm_ffi",
]
