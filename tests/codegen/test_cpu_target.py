"""CompileTarget: vector width and registers from the CPU, TVM target form, unknown names."""

from __future__ import annotations

import pytest

from sparseforge.codegen.cpu_target import KNOWN_TARGETS, CompileTarget, make_target


@pytest.mark.parametrize(
    ("mcpu", "lanes", "registers"),
    [("znver5", 16, 32), ("skylake-avx512", 16, 32), ("znver3", 8, 16), ("haswell", 8, 16), ("x86-64", 4, 16)],
)
def test_vector_width_from_mcpu(mcpu, lanes, registers):
    t = CompileTarget(mcpu=mcpu)
    assert (t.vector_lanes, t.vector_registers) == (lanes, registers)


def test_features_override_mcpu():
    assert CompileTarget(mcpu="znver5", features=frozenset({"avx2", "fma"})).vector_lanes == 8


def test_unknown_target_lists_known():
    with pytest.raises(ValueError, match="x86, arm, wasm"):
        make_target("riscv")
    with pytest.raises(ValueError, match="cortex-a76"):
        make_target("arm", cpu="pentium")
    assert KNOWN_TARGETS == ("x86", "arm", "wasm")


def test_arm_and_wasm_descriptions():
    arm = make_target("arm", threads=2, cpu="cortex-a55")
    assert (arm.vector_lanes, arm.vector_registers, arm.threads, arm.llvm_mattr) == (4, 32, 2, ["+neon"])
    wasm = make_target("wasm", threads=4)
    assert (wasm.vector_lanes, wasm.threads, wasm.llvm_mattr) == (4, 1, ["+simd128"])


@pytest.mark.tvm
def test_tvm_target_dict_form():
    pytest.importorskip("tvm")
    from sparseforge.codegen.cpu_target import detect_x86

    t = detect_x86(threads=3)
    exported = dict(t.tvm_target().export())
    assert exported["kind"] == "llvm"
    assert exported["mcpu"] == t.mcpu
    assert int(exported["num-cores"]) == 3
    assert t.vector_lanes in (8, 16)
