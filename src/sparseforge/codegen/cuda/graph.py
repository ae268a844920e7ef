"""Use the CUDA kernels inside Relax graphs: ``call_kernel(bb, kernel, x)`` emits ``relax.call_tir`` with the
kernel's constants bound as ``relax.const`` (uploaded to the GPU by the VM), output float32 ``out_shape``."""

from __future__ import annotations

from .._tvm import IRModule, relax


def call_kernel(bb, kernel, x):
    """Emit ``kernel`` (a SparseKernel) applied to the Relax expression ``x`` in block builder ``bb``."""
    gv = bb.add_func(kernel.func, kernel.name)
    args = [x] + [relax.const(c) for c in kernel.constants]
    return bb.emit(relax.call_tir(gv, args, relax.TensorType(kernel.out_shape, kernel.out_dtype)))


def mlp_module(layers, m: int, k: int, *, func: str = "main"):
    """A Relax module computing ``x -> layer_n(... layer_1(x))`` for a batch of ``m`` rows of ``k`` features.

    ``layers``: SparseKernels, or ``("dense", W [N, K], bias or None, activation)`` tuples compiled by dlight
    (``relax.op.linear`` + activation)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((m, k), "float32"))
    acts = {"none": None, "relu": relax.op.nn.relu, "gelu": relax.op.nn.gelu, "sigmoid": relax.op.sigmoid,
            "silu": relax.op.nn.silu, "tanh": relax.op.tanh}
    with bb.function(func, [x]):
        with bb.dataflow():
            h = x
            for layer in layers:
                if isinstance(layer, tuple):
                    _, w, b, act = layer
                    h = bb.emit(relax.op.linear(h, relax.const(w), None if b is None else relax.const(b)))
                    if acts[act] is not None:
                        h = bb.emit(acts[act](h))
                else:
                    h = call_kernel(bb, layer, h)
            out = bb.emit_output(h)
        bb.emit_func_output(out)
    mod = bb.get()
    assert isinstance(mod, IRModule)
    return mod
