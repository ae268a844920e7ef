"""Relax pass: convolutions to NCHWc kernels (placeholder)."""
from __future__ import annotations
from .. import _tvm
tvm = _tvm.tvm

@tvm.transform.module_pass(opt_level=0, name="ConvertConvToNCHWc")
class ConvertConvToNCHWc:
    def __init__(self, lanes: int, registers: int):
        self.lanes = lanes
        self.registers = registers

    def transform_module(self, mod, _ctx):
        return mod
