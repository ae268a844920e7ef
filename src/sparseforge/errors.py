"""User-facing errors.

Every error a user can cause (bad file, bad option, unsupported model) is a :class:`SparseforgeError` carrying
three things: *what* went wrong, *where* (file, node, value), and *what to do*. The CLI prints it as one message and
exits with code 2; nothing is written.
"""

from __future__ import annotations


class SparseforgeError(Exception):
    """An error caused by the user's input, reported without a traceback."""

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None):
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.what
        if self.where:
            text = f"{self.where}: {text}"
        if self.hint:
            text = f"{text}\n  hint: {self.hint}"
        return text


class ModelLoadError(SparseforgeError):
    """The model could not be read (missing, truncated, not ONNX, unsafe external data...)."""


class InvalidModelError(ModelLoadError):
    """The input model is not valid ONNX (the ONNX checker rejects it)."""


class InternalError(SparseforgeError):
    """A bug in sparseforge that was caught before it could do harm (e.g. a rewrite produced an invalid model and
    nothing was written). Exit code 3, like any other bug."""

    exit_code = 3

    @property
    def message(self) -> str:
        return f"internal error (a bug in sparseforge, please report it): {super().message}"


class UnsupportedModelError(SparseforgeError):
    """The model was read but sparseforge cannot process it (dynamic shapes, non-constant weights, empty graph)."""


class OutputPathError(SparseforgeError):
    """The output path cannot be written."""


class VerificationError(SparseforgeError):
    """A rewritten model differs numerically from the original beyond the tolerance."""

    exit_code = 1


class UnsupportedOpError(SparseforgeError):
    """Code generation met operators it cannot lower; the message lists all of them. ``bindable``: graph inputs
    whose binding (``compile --bind``) would make refused run-time parameters constant."""

    bindable: tuple[str, ...] = ()


class TargetError(SparseforgeError):
    """Unknown target or target option."""


class MissingDependencyError(SparseforgeError):
    """An optional dependency (TVM, PyTorch, a toolchain) is not installed; the hint names the install command."""
