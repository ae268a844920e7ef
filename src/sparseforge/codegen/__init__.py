"""Code generation: ONNX (onnx-ir) -> TVM Relax -> per-target schedules -> artifact.

Every ``import tvm`` goes through :mod:`sparseforge.codegen._tvm`.
"""
