"""Ahead-of-time driver for static-shape models: no TVM runtime on the device.

The Relax VM is only a sequencer for a static-shape model: it allocates buffers, makes views and calls kernels in
a fixed order. :func:`trace` runs the compiled model once on the host through a VM instrument and records every
kernel call with the buffers it touches; :func:`plan` turns the trace into a static memory plan (inputs, one arena
for every intermediate, embedded constants); :func:`emit_c` writes a small C driver that replays the calls
against the same kernels compiled for the device (`__tvm_ffi_<kernel>` entry points, TVM FFI C ABI) and provides
the few hooks TVM kernels expect from a runtime (error reporting, workspace allocation, a serial parallel-for).

The host build used for tracing must have the same kernels and constant layouts as the device build (built with
the device's vector width): :func:`check_same_kernels` verifies the kernel sets match.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from sparseforge.errors import InternalError, UnsupportedOpError

from .vm import VMRunner, flatten

ALIGN = 64
#: VM builtins that only allocate, check or make views: nothing to replay for them.
SILENT_BUILTINS = frozenset({
    "vm.builtin.check_tensor_info", "vm.builtin.match_shape", "vm.builtin.alloc_storage", "vm.builtin.alloc_tensor",
    "vm.builtin.null_value", "vm.builtin.reshape", "vm.builtin.check_tuple_info", "vm.builtin.tuple_getitem",
    "vm.builtin.make_tuple", "vm.builtin.make_shape", "vm.builtin.shape_of", "vm.builtin.match_prim_value",
    "vm.builtin.check_shape_info", "vm.builtin.check_prim_value_info", "vm.builtin.invoke_closure",
})

_DTYPES = {"float32": (2, 32), "float64": (2, 64), "float16": (2, 16), "int64": (0, 64), "int32": (0, 32),
           "int8": (0, 8), "uint8": (1, 8), "uint16": (1, 16), "int16": (0, 16), "uint32": (1, 32), "uint64": (1, 64),
           "bool": (6, 8)}


class AotError(UnsupportedOpError):
    """The model cannot be run without the VM (e.g. it uses a data-moving builtin): a limitation of the wasm
    target, refused like an unsupported op (exit 2)."""

    def __init__(self, what: str):
        super().__init__(f"the wasm target cannot compile this model: {what}",
                         hint="the wasm artifact replays the model's kernels without TVM's VM; compile it for x86 "
                              "or arm, or export the model without these ops")


@dataclasses.dataclass
class Arg:
    kind: str  # "tensor" or "int" or "float"
    value: Any = None  # scalar value
    ptr: int = 0
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    array: np.ndarray | None = None  # snapshot for constants

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclasses.dataclass
class Call:
    name: str
    args: list[Arg]


@dataclasses.dataclass
class Trace:
    calls: list[Call]
    intermediates: list[tuple[int, int]]  # [start, end) of every tensor the VM allocated
    inputs: list[Arg]
    outputs: list[Arg]


def kernel_names(llvm_module) -> set[str]:
    """Names of the TVM FFI kernels in an LLVM module (``__tvm_ffi_<name>`` definitions)."""
    return set(re.findall(r"define [^@]*@__tvm_ffi_([A-Za-z0-9_]+)\(", llvm_module.inspect_source("ll")))


def host_llvm_module(executable):
    mod = executable.mod if hasattr(executable, "mod") else executable
    if mod.kind == "llvm":
        return mod
    for m in mod.imports:
        if m.kind == "llvm":
            return m
    raise AotError(f"it has no kernels to run (the outputs are inputs or constants; the executable is {mod.kind})")


def check_same_kernels(host_executable, device_llvm_module) -> set[str]:
    host = kernel_names(host_llvm_module(host_executable))
    device = kernel_names(device_llvm_module)
    if host != device:
        raise InternalError(f"host and device builds differ in kernels: only host {sorted(host - device)[:5]}, "
                            f"only device {sorted(device - host)[:5]}")
    return host


def _tensor_arg(t) -> Arg:
    shape = tuple(int(d) for d in t.shape)
    ptr = t.data_ptr() if callable(t.data_ptr) else t.data_ptr
    return Arg("tensor", ptr=int(ptr), shape=shape, dtype=str(t.dtype))


def trace(executable, inputs: Sequence[np.ndarray], kernels: set[str]) -> Trace:
    """Run ``main`` once, recording kernel calls, VM allocations, inputs and outputs."""
    runner = VMRunner(executable)
    tensors = runner.to_device(inputs)
    calls: list[Call] = []
    intermediates: list[tuple[int, int]] = []
    unknown: set[str] = set()

    def instrument(func, name, before, ret, *args):
        if not before:
            if name == "vm.builtin.alloc_tensor" and ret is not None and hasattr(ret, "data_ptr"):
                a = _tensor_arg(ret)
                intermediates.append((a.ptr, a.ptr + max(a.nbytes, 1)))
            return 0
        if name in kernels:
            recorded = []
            for a in args:
                if hasattr(a, "data_ptr") and hasattr(a, "shape"):
                    arg = _tensor_arg(a)
                    arg.array = a.numpy()  # snapshot (kept only for constants, see plan())
                    recorded.append(arg)
                elif isinstance(a, bool) or isinstance(a, (int, np.integer)):
                    recorded.append(Arg("int", value=int(a)))
                elif isinstance(a, (float, np.floating)):
                    recorded.append(Arg("float", value=float(a)))
                else:
                    raise AotError(f"kernel {name} takes an argument of type {type(a).__name__}")
            calls.append(Call(name, recorded))
        elif name not in SILENT_BUILTINS:
            unknown.add(name)
        return 0

    result = runner.instrumented(tensors, instrument)
    if unknown:
        raise AotError(f"the model calls VM functions the AOT driver cannot replay: {sorted(unknown)}")
    return Trace(calls, intermediates, [_tensor_arg(t) for t in tensors], [_tensor_arg(t) for t in flatten(result)])


# ------------------------------------------------------------------------------------------ memory plan


@dataclasses.dataclass
class Ref:
    """Where a tensor lives in the device driver."""

    region: str  # "input", "arena", "const"
    index: int  # input index / constant index (unused for the arena)
    offset: int  # byte offset inside the region
    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass
class Plan:
    calls: list[tuple[str, list[Ref | Arg]]]
    inputs: list[Arg]
    outputs: list[Ref]
    arena_bytes: int
    constants: list[np.ndarray]
    constant_offsets: list[int]

    @property
    def weights_bytes(self) -> int:
        return self.constant_offsets[-1] + self.constants[-1].nbytes if self.constants else 0


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def plan(tr: Trace) -> Plan:
    """Static memory plan: VM-allocated memory packed into one arena, everything else an input or a constant."""
    regions = _merge(tr.intermediates)
    arena_offsets: list[int] = []
    total = 0
    for start, end in regions:
        arena_offsets.append(total)
        total += -(-(end - start) // ALIGN) * ALIGN
    starts = [r[0] for r in regions]

    def in_arena(ptr: int) -> int | None:

        i = bisect.bisect_right(starts, ptr) - 1
        if i >= 0 and ptr < regions[i][1]:
            return arena_offsets[i] + (ptr - regions[i][0])
        return None

    input_ptrs = {a.ptr: i for i, a in enumerate(tr.inputs)}
    constants: list[np.ndarray] = []
    const_index: dict[tuple[int, tuple[int, ...], str], int] = {}
    const_offsets: list[int] = []
    const_cursor = 0

    def ref(arg: Arg) -> Ref:
        nonlocal const_cursor
        offset = in_arena(arg.ptr)
        if offset is not None:
            return Ref("arena", 0, offset, arg.shape, arg.dtype)
        for ptr, i in input_ptrs.items():
            size = tr.inputs[i].nbytes
            if ptr <= arg.ptr < ptr + max(size, 1):
                return Ref("input", i, arg.ptr - ptr, arg.shape, arg.dtype)
        key = (arg.ptr, arg.shape, arg.dtype)
        if key not in const_index:
            const_index[key] = len(constants)
            constants.append(np.ascontiguousarray(arg.array))
            const_offsets.append(const_cursor)
            const_cursor += -(-max(arg.nbytes, 1) // ALIGN) * ALIGN
        return Ref("const", const_index[key], const_offsets[const_index[key]], arg.shape, arg.dtype)

    calls = [(c.name, [ref(a) if a.kind == "tensor" else a for a in c.args]) for c in tr.calls]
    outputs = [ref(o) for o in tr.outputs]
    return Plan(calls, tr.inputs, outputs, total, constants, const_offsets)


def weights_blob(p: Plan) -> bytes:
    """All constants, each at its planned (64-byte aligned) offset."""
    blob = bytearray(p.weights_bytes)
    for array, offset in zip(p.constants, p.constant_offsets):
        data = array.tobytes()
        blob[offset: offset + len(data)] = data
    return bytes(blob)


# ------------------------------------------------------------------------------------------ C driver


_RUNTIME_HOOKS = r"""
/* ---- the few runtime hooks TVM kernels call (no TVM runtime on the device) ---- */
static char sf_error_message[512];
void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message) {
  snprintf(sf_error_message, sizeof(sf_error_message), "%s: %s", kind, message);
}
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts) {
  size_t used = (size_t)snprintf(sf_error_message, sizeof(sf_error_message), "%s: ", kind);
  for (int32_t i = 0; i < num_parts && used < sizeof(sf_error_message); ++i) {
    used += (size_t)snprintf(sf_error_message + used, sizeof(sf_error_message) - used, "%s", parts[i]);
  }
}
int TVMFFIEnvModRegisterSystemLibSymbol(const char* name, void* ptr) { (void)name; (void)ptr; return 0; }

typedef int (*sf_lambda)(int task_id, void* penv, void* cdata);
typedef struct { void* sync_handle; int32_t num_task; } sf_parallel_env;
static int sf_parallel_launch(sf_lambda flambda, void* cdata, int num_task) {
  sf_parallel_env env = {0, 1};
  (void)num_task;
  return flambda(0, &env, cdata);  /* one task runs the whole range */
}
static int sf_parallel_barrier(int task_id, void* penv) { (void)task_id; (void)penv; return 0; }
static void* sf_alloc_workspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type; (void)device_id; (void)dtype_code; (void)dtype_bits;
  void* p = NULL;
  if (posix_memalign(&p, 64, nbytes ? (size_t)nbytes : 64) != 0) return NULL;
  return p;
}
static int sf_free_workspace(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id; free(ptr); return 0;
}
int (*__TVMBackendParallelLaunch)(sf_lambda, void*, int) = sf_parallel_launch;
int (*__TVMBackendParallelBarrier)(int, void*) = sf_parallel_barrier;
void* (*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = sf_alloc_workspace;
int (*__TVMBackendFreeWorkspace)(int, int, void*) = sf_free_workspace;
"""


def _c_ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def emit_c(p: Plan, *, weights_file: str | None, prefix: str = "sf") -> str:
    """C source of the driver. Exports ``<prefix>_run``, ``_input``, ``_output``, ``_error`` (see module doc).

    ``weights_file``: path embedded with ``.incbin`` (None: no constants).
    """
    lines = [
        "/* Generated by sparseforge: ahead-of-time driver for one static-shape model. Do not edit. */",
        "#include <stdint.h>", "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>",
        "#include <tvm/ffi/c_api.h>", "",
        "#if defined(__wasm__)",
        "#define SF_EXPORT(name) __attribute__((export_name(#name)))",
        "#else",
        "#define SF_EXPORT(name) __attribute__((visibility(\"default\")))",
        "#endif",
    ]
    lines.append(_RUNTIME_HOOKS)
    kernels = sorted({name for name, _ in p.calls})
    for name in kernels:
        lines.append(f"int __tvm_ffi_{name}(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* ret);")
    lines.append("")
    if p.constants:
        lines += [
            "#if defined(__wasm__)",
            "#define SF_SECTION \".section .rodata.sf_weights,\\\"\\\",@\\n\"",
            "#define SF_SECTION_END \"\"",
            "#else",
            "#define SF_SECTION \".pushsection .rodata.sf_weights,\\\"a\\\",@progbits\\n\"",
            "#define SF_SECTION_END \".popsection\\n\"",
            "#endif",
            "__asm__(SF_SECTION",
            "        \".globl sf_weights\\n\"",
            "        \".p2align 6\\n\"",
            "        \"sf_weights:\\n\"",
            f"        \".incbin \\\"{weights_file}\\\"\\n\"",
            f"        \".size sf_weights, {p.weights_bytes}\\n\"",
            "        SF_SECTION_END);",
            "extern const uint8_t sf_weights[];",
        ]
    else:
        lines.append("static const uint8_t sf_weights[1] = {0};")
    lines.append(f"static uint8_t sf_arena[{max(p.arena_bytes, ALIGN)}] __attribute__((aligned(64)));")
    for i, a in enumerate(p.inputs):
        lines.append(f"static uint8_t sf_in{i}[{max(a.nbytes, 1)}] __attribute__((aligned(64)));")
    lines.append("")
    # shapes and tensors
    for ci, (_, args) in enumerate(p.calls):
        for ai, a in enumerate(args):
            if isinstance(a, Ref):
                dims = ", ".join(str(d) for d in a.shape) or "1"
                lines.append(f"static int64_t sf_shape_{ci}_{ai}[] = {{{dims}}};")
    lines.append("")
    lines.append("static void sf_tensor(DLTensor* t, void* data, int64_t* shape, int ndim, uint8_t code, uint8_t bits) {")
    lines.append("  t->data = data; t->device.device_type = kDLCPU; t->device.device_id = 0; t->ndim = ndim;")
    lines.append("  t->dtype.code = code; t->dtype.bits = bits; t->dtype.lanes = 1; t->shape = shape;")
    lines.append("  t->strides = NULL; t->byte_offset = 0;")
    lines.append("}")
    lines.append("")
    lines.append(f"SF_EXPORT({prefix}_run) int {prefix}_run(void) {{")
    lines.append("  DLTensor t[64];")
    lines.append("  TVMFFIAny a[64];")
    lines.append("  TVMFFIAny ret;")
    lines.append("  sf_error_message[0] = 0;")
    for ci, (name, args) in enumerate(p.calls):
        if len(args) > 64:
            raise AotError(f"kernel {name} takes {len(args)} arguments (at most 64)")
        for ai, a in enumerate(args):
            if isinstance(a, Ref):
                code, bits = _DTYPES[a.dtype]
                base = {"arena": "sf_arena", "input": f"sf_in{a.index}", "const": "(uint8_t*)sf_weights"}[a.region]
                lines.append(f"  sf_tensor(&t[{ai}], {base} + {a.offset}, sf_shape_{ci}_{ai}, {len(a.shape)}, "
                             f"{code}, {bits});")
                lines.append(f"  a[{ai}].type_index = kTVMFFIDLTensorPtr; a[{ai}].zero_padding = 0; "
                             f"a[{ai}].v_ptr = &t[{ai}];")
            elif a.kind == "int":
                lines.append(f"  a[{ai}].type_index = kTVMFFIInt; a[{ai}].zero_padding = 0; "
                             f"a[{ai}].v_int64 = {int(a.value)};")
            else:
                lines.append(f"  a[{ai}].type_index = kTVMFFIFloat; a[{ai}].zero_padding = 0; "
                             f"a[{ai}].v_float64 = {float(a.value)!r};")
        lines.append("  ret.type_index = kTVMFFINone;")
        lines.append(f"  if (__tvm_ffi_{name}(NULL, a, {len(args)}, &ret) != 0) {{")
        lines.append(f"    if (!sf_error_message[0]) snprintf(sf_error_message, sizeof(sf_error_message), "
                     f"\"kernel {name} failed\");")
        lines.append("    return 1;")
        lines.append("  }")
    lines.append("  return 0;")
    lines.append("}")
    lines.append("")
    lines.append(f"SF_EXPORT({prefix}_input) void* {prefix}_input(int i) {{")
    lines.append("  switch (i) {")
    for i in range(len(p.inputs)):
        lines.append(f"    case {i}: return sf_in{i};")
    lines.append("    default: return NULL;")
    lines.append("  }")
    lines.append("}")
    lines.append(f"SF_EXPORT({prefix}_output) void* {prefix}_output(int i) {{")
    lines.append("  switch (i) {")
    for i, o in enumerate(p.outputs):
        base = {"arena": "sf_arena", "input": f"sf_in{o.index}", "const": "(uint8_t*)sf_weights"}[o.region]
        lines.append(f"    case {i}: return (void*)({base} + {o.offset});")
    lines.append("    default: return NULL;")
    lines.append("  }")
    lines.append("}")
    lines.append(f"SF_EXPORT({prefix}_error) const char* {prefix}_error(void) {{ return sf_error_message; }}")
    return "\n".join(lines) + "\n"
