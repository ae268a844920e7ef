"""Per-target runners: every target family names a runner that exists; unavailable runners say why."""

from __future__ import annotations

import pytest

from sparseforge.errors import TargetError
from sparseforge.runtime import runners


def test_every_runner_kind_is_known_and_labelled() -> None:
    for kind in ("host", "qemu-aarch64", "wasm", "cuda"):
        found = runners.runners(kind)
        assert found and all(r.label != "?" and r.how for r in found)
    assert [r.label for r in runners.runners("wasm")] == ["wasmtime", "node"]


def test_unknown_runner_kind_is_a_clear_error() -> None:
    with pytest.raises(TargetError, match="no runner for 'pdp11'"):
        runners.runners("pdp11")


@pytest.mark.tvm
def test_target_families_name_existing_runners() -> None:
    pytest.importorskip("tvm")
    from sparseforge.codegen.targets import KNOWN, get_target

    for name in KNOWN:
        assert runners.runners(get_target(name).runner)


def test_unavailable_is_a_reason_or_none() -> None:
    for kind in ("host", "qemu-aarch64", "wasm"):
        for runner in runners.runners(kind):
            why = runner.unavailable()
            assert why is None or isinstance(why, str) and why
