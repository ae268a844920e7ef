"""sparseforge's own ONNX -> Relax converters, for ops and attributes TVM's importer lacks or gets wrong.

Each converter is ``convert(bb, inputs, attrs) -> relax.Expr`` (a tuple for several outputs), with the calling
convention of TVM's converters: ``inputs`` the converted inputs in ONNX order (``None`` for an omitted optional
one), ``attrs`` the parsed attributes plus ``attrs["tvm_custom"]`` (``name``, ``num_outputs``). Each follows the
ONNX reference implementation (``onnx.reference``) of its op, and is checked against ONNX Runtime on the ONNX node
tests (``benchmarks/conformance.py``) and in ``tests/codegen/test_converters.py``. :data:`CONVERTERS` maps an ONNX
op type to its converter; ``SparseforgeImporter`` tries it before TVM's. What is still refused is stated by the op
contract (:mod:`sparseforge.codegen.contract`).
"""

from __future__ import annotations

from . import attention, conv, dft, elementwise, losses, normalization, resize, scan

CONVERTERS = {
    **attention.CONVERTERS,
    **conv.CONVERTERS,
    **dft.CONVERTERS,
    **elementwise.CONVERTERS,
    **losses.CONVERTERS,
    **normalization.CONVERTERS,
    **resize.CONVERTERS,
    **scan.CONVERTERS,
}

__all__ = ["CONVERTERS"]
