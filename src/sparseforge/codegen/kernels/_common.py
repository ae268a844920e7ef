"""Shared pieces of the kernel builders: target description, kernel record, TVMScript emission.

Kernels are generated as TVMScript *source text* with every shape and (for static kernels) every sparsity offset
written as a literal, then read into a PrimFunc by :mod:`._script_reader` (the same IRBuilder calls as
``tvm.script.from_source``, 7x faster; the parser itself for text outside its subset). Generating text sidesteps
the TVMScript closure trap (names in buffer annotations resolving to module globals) and makes the generated code
easy to read: ``kernel.func.script()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.forms import Encoded

from .._tvm import T, Target, structural_equal, tvm
from . import _script_reader
from .activations import ACTIVATIONS, apply_activation_np, f32  # noqa: F401 - re-exported

_logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------- target


@dataclass(frozen=True)
class KernelTarget:
    """What a kernel builder needs to know about the machine.

    lanes: float32 lanes of one vector register (16 AVX-512, 8 AVX2, 4 NEON / wasm SIMD128).
    threads: number of parallel tasks a kernel is split into (1: no ``T.parallel`` at all).
    tvm_target: TVM target in JSON-dict form, e.g. ``{"kind": "llvm", "mcpu": "znver5"}``.
    registers: vector registers available for accumulators (32 on AVX-512 and NEON, 16 on AVX2).
    gather: hardware gather for the small-M kernels: "avx512", "avx2" (intrinsics) or "none" (per-lane loads:
        portable, and faster than vgatherdps on Zen 4/5).
    cache_bytes: per-core L2 budget; row chunks of the panel kernels keep their weights within a quarter of it.
    """

    lanes: int = 4
    threads: int = 1
    tvm_target: dict = field(default_factory=lambda: {"kind": "llvm"})
    registers: int = 16
    gather: str = "none"
    cache_bytes: int = 1 << 20

    def tvm(self):
        return Target(dict(self.tvm_target))


def _llvm_features(tvm_target: dict) -> tuple[bool, bool]:
    if tvm_target.get("kind") != "llvm":
        return False, False
    tgt = Target(dict(tvm_target))
    has = tvm.target.codegen.llvm_cpu_has_features
    try:
        return bool(has(["avx512f"], tgt)), bool(has(["avx2"], tgt))
    except Exception:  # pragma: no cover - non-x86 LLVM builds
        return False, False


def host_tvm_target() -> dict:
    """The detected host CPU as a TVM target dict (``Target.from_device(cpu)``)."""
    cfg = dict(Target.from_device(tvm.cpu()).export())
    return {k: v for k, v in cfg.items() if k in ("kind", "mtriple", "mcpu", "mattr", "mabi")}


def make_target(tvm_target: dict | None = None, *, threads: int | None = None, lanes: int | None = None,
                **overrides) -> KernelTarget:
    """A :class:`KernelTarget` for ``tvm_target`` (default: host) with lanes/registers/gather derived from its
    CPU features unless given."""
    tvm_target = dict(tvm_target) if tvm_target is not None else host_tvm_target()
    avx512, avx2 = _llvm_features(tvm_target)
    if lanes is None:
        lanes = 16 if avx512 else (8 if avx2 else 4)
    triple = str(tvm_target.get("mtriple", ""))
    if avx2 and "+prefer-no-gather" not in tvm_target.get("mattr", []):
        # hardware gathers are slower than per-lane loads on Zen 4/5 (and on Intel since the GDS microcode fix);
        # keep LLVM from forming them out of per-lane loads
        tvm_target["mattr"] = list(tvm_target.get("mattr", [])) + ["+prefer-no-gather", "+prefer-no-scatter"]
    registers = 32 if (avx512 or triple.startswith("aarch64")) else 16
    cfg = dict(lanes=lanes, threads=threads or os.cpu_count() or 1, tvm_target=tvm_target,
               registers=registers, gather="none")
    cfg.update(overrides)
    return KernelTarget(**cfg)


def resolve_target(target: Any = None) -> KernelTarget:
    """Accept None (host), a :class:`KernelTarget`, a dict or any object with ``lanes``/``threads``/``tvm_target``
    (or a ``to_tvm()`` method giving the TVM target dict)."""
    if isinstance(target, KernelTarget):
        return target
    if target is None:
        return make_target()
    if isinstance(target, dict):
        get = target.get
    else:
        def get(key, default=None):
            return getattr(target, key, default)
    tvm_target = get("tvm_target")
    if tvm_target is None and callable(get("to_tvm")):
        tvm_target = get("to_tvm")()
    if tvm_target is not None and not isinstance(tvm_target, dict):
        tvm_target = dict(tvm_target.export())  # a tvm Target object
    extra = {k: get(k) for k in ("registers", "gather", "cache_bytes") if get(k) is not None}
    return make_target(tvm_target, threads=get("threads"), lanes=get("lanes"), **extra)


# --------------------------------------------------------------------------------------------------- kernel


@dataclass(frozen=True)
class SparseKernel:
    """A scheduled TIR kernel specialized to one constant weight.

    Called as ``func(X, *constants, Y)`` (destination passing, as ``relax.call_tir``); ``constants`` hold the packed
    weight (values, indices, bias, ...), ``in_shape``/``out_shape`` the activation input and output shapes.
    ``info`` describes the chosen format/variant (for reports and cost models).
    """

    name: str
    func: Any
    constants: tuple[np.ndarray, ...]
    out_shape: tuple[int, ...]
    out_dtype: str
    in_shape: tuple[int, ...] = ()
    info: dict = field(default_factory=dict, compare=False)
    _reference: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """NumPy result (float64 accumulation, cast to float32)."""
        return self._reference(np.asarray(x))


def matmul_reference(weight, bias: np.ndarray | None, activation: str):
    """Float64 NumPy ``act(x @ W^T + bias)`` as float32; ``weight`` dense or :class:`Encoded` (decoded on first
    call)."""
    b = None if bias is None else np.asarray(bias, np.float64)
    w: list[np.ndarray] = []

    def ref(x):
        if not w:
            w.append(np.asarray(dense_of(weight), np.float64))
        y = np.asarray(x, np.float64) @ w[0].T
        if b is not None:
            y = y + b
        return apply_activation_np(y, activation).astype(np.float32)

    return ref


def conv1x1_reference(weight, bias: np.ndarray | None, activation: str, batch: int, height: int,
                      width: int, *, layout=None):
    """Float64 NumPy reference of a 1x1 NCHW convolution with fused bias + activation (returns float32);
    ``weight`` dense ``[Cout, Cin]`` or :class:`Encoded`. ``layout``: optional ``(to_nchw, from_nchw)`` converting
    the kernel's input to NCHW and the NCHW result back (blocked layouts)."""
    b64 = None if bias is None else np.asarray(bias, np.float64)
    w: list[np.ndarray] = []

    def reference(x):
        if not w:
            w.append(np.asarray(dense_of(weight), np.float64))
        cout, cin = w[0].shape
        if layout is not None:
            x = layout[0](x)
        y = np.einsum("oc,bcp->bop", w[0], np.asarray(x, np.float64).reshape(batch, cin, height * width))
        if b64 is not None:
            y = y + b64[None, :, None]
        y = apply_activation_np(y, activation).astype(np.float32).reshape(batch, cout, height, width)
        return y if layout is None else layout[1](y)

    return reference


def check_bias_activation(rows: int, bias, activation, name) -> np.ndarray | None:
    """Validate ``activation`` and a bias of ``rows`` entries; the bias as contiguous float32 (or None)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
        if bias.shape[0] != rows:
            raise ValueError(f"{name}: bias has {bias.shape[0]} entries, weight has {rows} rows")
    return bias


def check_common(weight, bias, activation, name) -> tuple[np.ndarray, np.ndarray | None]:
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    if weight.ndim != 2:
        raise ValueError(f"{name}: weight must be 2-D [out, in], got shape {weight.shape}")
    return weight, check_bias_activation(weight.shape[0], bias, activation, name)


def check_operand(weight, bias, activation, name, fmt: str, *, block=None, nm=None
                  ) -> tuple[Encoded, np.ndarray | None]:
    """The weight as an encoded operand: an :class:`Encoded` (any form) is used as is, a dense ``[N, K]`` matrix
    is encoded in form ``fmt`` (with ``block`` / ``nm``); bias as float32 ``[N]`` (validated)."""
    if isinstance(weight, Encoded):
        return weight, check_bias_activation(weight.shape[0], bias, activation, name)
    weight, bias = check_common(weight, bias, activation, name)
    return forms.get(fmt).encode(weight, block=block, nm=nm), bias


def conv_operand(weight, bias, activation, name, block) -> tuple[Encoded, np.ndarray | None]:
    """A 1x1 conv weight (dense ``[Cout, Cin(, 1, 1)]`` or encoded, any form) as an encoded operand: dense ones
    encoded as CSR (``block=None``) or BSR ``block``."""
    weight = as_conv1x1_matrix(weight, name)
    if block is None:
        return check_operand(weight, bias, activation, name, "csr")
    return check_operand(weight, bias, activation, name, "bsr", block=(int(block[0]), int(block[1])))


def dense_of(weight) -> np.ndarray:
    """Dense ``[N, K]`` of an operand (for NumPy references only; kernels pack from the encoded operand)."""
    if isinstance(weight, Encoded):
        return forms.get(weight.fmt).decode(weight)
    return weight


def as_conv1x1_matrix(weight, name):
    """A 1x1 convolution weight as float32 ``[Cout, Cin]`` (``[Cout, Cin, 1, 1]`` accepted; other kernels refused);
    an encoded operand is returned as is."""
    if isinstance(weight, Encoded):
        return weight
    weight = np.asarray(weight, np.float32)
    if weight.ndim == 4:
        if weight.shape[2:] != (1, 1):
            raise ValueError(f"{name}: kernel must be 1x1, got {weight.shape}")
        weight = weight[:, :, 0, 0]
    return weight


_name_counter = [0]


def unique_name(prefix: str) -> str:
    _name_counter[0] += 1
    return f"{prefix}_{os.getpid()}_{_name_counter[0]}"


def index_dtype(k: int) -> str:
    """Narrowest index dtype for column indices in [0, k)."""
    return "uint16" if k <= 65536 else "int32"


def pow2_ceil(x: int) -> int:
    return 1 << max(0, int(x - 1).bit_length())


def balanced_chunks(work: np.ndarray, parts: int) -> np.ndarray:
    """Split items with per-item ``work`` into ``parts`` contiguous chunks of about equal total work.

    Returns chunk boundaries (int32, length parts + 1)."""
    n = len(work)
    parts = max(1, min(parts, n)) if n else 1
    cum = np.concatenate([[0], np.cumsum(np.asarray(work, np.float64) + 1e-3)])
    targets = cum[-1] * np.arange(parts + 1) / parts
    bounds = np.searchsorted(cum, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, n
    return np.maximum.accumulate(bounds).astype(np.int32)


# --------------------------------------------------------------------------------------------------- emission


class Src:
    """Indented TVMScript source builder."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0
        self._n = 0

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    @contextlib.contextmanager
    def block(self, header: str | None):
        """Open ``header:`` (an indented block); ``None`` opens nothing (optional guards)."""
        if header is None:
            yield
            return
        self(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def let(self, name: str, expr: str) -> str:
        """Immutable binding (``T.Bind``). A plain ``x = expr`` in TVMScript 0.27 creates a mutable one-element
        local buffer instead, which breaks inside vectorized loops."""
        self(f"{name} = T.Bind({expr})")
        return name

    def var(self, prefix: str = "t") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def func_header(src: Src, name: str, params: list[tuple[str, tuple[int, ...], str]]) -> None:
    args = ", ".join(f"{p}: T.Buffer({tuple(int(s) for s in shape)!r}, {dt!r})" for p, shape, dt in params)
    src("@T.prim_func")
    src(f"def {name}({args}):")
    src.depth += 1
    src(f'T.func_attr({{"global_symbol": {name!r}, "tirx.noalias": True, "tirx.is_scheduled": True}})')


#: Set (to anything but "" or "0") to build every kernel with TVMScript's parser too and require the two PrimFuncs
#: to be structurally equal (the tests set it; it doubles the parse time); "strict" also fails a kernel the reader
#: cannot read.
CHECK_READER_ENV = "SPARSEFORGE_CHECK_SCRIPT_READER"


def parse(src: Src):
    """The PrimFunc of the generated text: :mod:`._script_reader` (7x faster), else TVMScript's parser."""
    text = src.text()
    try:
        func = _script_reader.read_prim_func(text, {"T": T})
    except Exception as exc:  # outside the reader's subset (Unsupported), or a reader bug: the parser decides
        _logger.debug("TVMScript parser used for a kernel: %s", exc)
        if os.environ.get(CHECK_READER_ENV, "") == "strict":
            raise RuntimeError(f"the fast TVMScript reader could not read a kernel: {exc!r}") from exc
        func = None
    if func is None or os.environ.get(CHECK_READER_ENV, "") not in ("", "0"):
        try:
            parsed = tvm.script.from_source(text, extra_vars={"T": T})
        except Exception as exc:  # keep the generated text for debugging
            raise RuntimeError(f"TVMScript parse failed: {exc}\n--- generated source ---\n{text[:20000]}") from exc
        if func is not None and not structural_equal(func, parsed):
            raise RuntimeError(f"the fast TVMScript reader and TVMScript's parser disagree on:\n{text[:20000]}")
        func = parsed
    return func


def vec_loops(src: Src, extent: int, lanes: int, var: str):
    """Open loops covering ``range(extent)`` with vectors at most ``lanes`` wide; yields the index expression.

    Emits ``for var_o in T.unroll(extent // lanes): for var in T.vectorized(lanes)`` when extent > lanes."""
    return _VecLoops(src, extent, lanes, var)


class _VecLoops:
    def __init__(self, src, extent, lanes, var):
        self.src, self.extent, self.lanes, self.var = src, extent, lanes, var

    def __enter__(self):
        s, e, w, v = self.src, self.extent, self.lanes, self.var
        if e <= w or e % w:
            s(f"for {v} in T.vectorized({e}):" if e > 1 else f"for {v} in T.serial(1):")
            s.depth += 1
            self.opened = 1
            return v
        s(f"for {v}_o in T.unroll({e // w}):")
        s.depth += 1
        s(f"for {v}_i in T.vectorized({w}):")
        s.depth += 1
        self.opened = 2
        return f"({v}_o * {w} + {v}_i)"

    def __exit__(self, *exc):
        self.src.depth -= self.opened
        return False


def parallel_or_serial(threads: int, extent: int) -> str:
    return "T.parallel" if threads > 1 and extent > 1 else "T.serial"
