"""The per-CPU performance model: fitted from a grid, robust to a noisy point, monotone in density, cached; the
measured cost model predicts with it and measures close calls only."""

from __future__ import annotations

import numpy as np

from sparseforge.codegen.cost import perf_model
from sparseforge.codegen.cost.measured import CalibrationTable, MeasuredCostModel, monotone
from sparseforge.codegen.cost.perf_model import PerfModel, fit


def _truth(m, n, k, stored, *, per_mac=2e-11):
    return 1e-6 + per_mac * m * stored * n * k + 1e-10 * stored * n * k + 1e-9 * m * (n + k)


def test_fit_recovers_the_model_and_drops_a_spike() -> None:
    samples = [(m, n, k, d, _truth(m, n, k, d)) for m, n, k in perf_model.GRID["matmul"] for d in (0.05, 0.3)]
    samples[3] = (*samples[3][:4], samples[3][4] * 40)  # measured while the machine was busy
    fitted = fit(samples)
    assert fitted.dropped == 1
    for m, n, k, d in [(64, 4096, 1024, 0.1), (1, 768, 3072, 0.02), (300, 300, 300, 0.5)]:
        assert abs(fitted.predict(m, n, k, d) / _truth(m, n, k, d) - 1) < 0.05
    times = [fitted.predict(128, 1024, 1024, d) for d in np.linspace(0.01, 1.0, 30)]
    assert all(a <= b for a, b in zip(times, times[1:]))  # a sparser weight is never predicted slower


def test_monotone_lowers_noisy_sparser_points() -> None:
    assert monotone([[0.5, 15.7], [0.03, 12.08], [0.1, 0.25]]) == [[0.03, 0.25], [0.1, 0.25], [0.5, 15.7]]


class _Runner:
    def __init__(self, seconds):
        self.seconds = seconds

    def __call__(self):
        return None


class _FakeTimer:
    """Kernel times from :func:`_truth` (sparse kernels at half the dense rate per stored element)."""

    def __init__(self):
        self.built = 0

    def dense_runner(self, kind, m, n, k):
        self.built += 1
        return _Runner(_truth(m, n, k, 1.0))

    def sparse_runner(self, variant, kind, m, n, k, density):
        self.built += 1
        return _Runner(_truth(m, n, k, density, per_mac=4e-11))

    def time(self, fn):
        return fn.seconds

    def interleaved(self, fns):
        return [fn.seconds for fn in fns]


def test_cost_model_fits_once_predicts_and_refines(tmp_path) -> None:
    timer = _FakeTimer()
    table = CalibrationTable("cpu", 1, path=tmp_path / "calibration" / "cpu-1t.json")
    perf = PerfModel("cpu", 1, path=tmp_path / "calibration" / "perf-cpu-1t.json")
    model = MeasuredCostModel(table, timer, perf=perf, progress=lambda *a: None)
    t = model.predict("csr", 128, 3000, 700, density=0.1)
    grid = len(perf_model.grid_points("csr", "matmul"))
    assert timer.built == grid and abs(t / _truth(128, 3000, 700, 0.1, per_mac=4e-11) - 1) < 0.05
    model.predict("csr", 64, 5000, 900, density=0.2)
    assert timer.built == grid  # any other shape: predicted, nothing measured
    dense, sparse = model.refine("csr", 128, 3000, 700, density=0.1)
    assert timer.built == grid + 2  # the dense layer and the kernel at this shape
    built = timer.built
    assert model.refine("csr", 128, 3000, 700, density=0.1) == (dense, sparse)  # cached
    assert model.predict("csr", 128, 3000, 700, density=0.1) == sparse and timer.built == built
    reloaded = PerfModel.load("cpu", 1, tmp_path)
    assert reloaded.get("csr", "matmul") == perf.get("csr", "matmul")


def test_a_kernel_that_cannot_be_built_at_a_shape_is_not_predicted_there(tmp_path) -> None:
    class _NoCsrHere(_FakeTimer):
        def sparse_runner(self, variant, kind, m, n, k, density):
            if variant == "csr" and (m, n, k) == (8, 100, 60):
                raise ValueError("no kernel for this shape")
            return super().sparse_runner(variant, kind, m, n, k, density)

    table = CalibrationTable("cpu", 1, path=tmp_path / "t.json")
    model = MeasuredCostModel(table, _NoCsrHere(), perf=PerfModel("cpu", 1), progress=lambda *a: None)
    assert model.predict("csr", 8, 100, 60, density=0.1) is not None  # the fit alone would offer it
    assert model.refine("csr", 8, 100, 60, density=0.1) is None
    assert model.predict("csr", 8, 100, 60, density=0.1) is None
    assert model.predict("csr", 8, 100, 61, density=0.1) is not None


def test_conv_layers_are_predicted_through_the_1x1_fits_and_measured_at_their_geometry(tmp_path) -> None:
    """A k x k conv (kind = its geometry key) is predicted by the conv1x1 fits, the sparse side over the
    ``OH * Wq`` positions the direct kernel sweeps; a refine measures it under its own key."""
    from sparseforge.codegen.cost.measured import model_shape
    from sparseforge.ir.conv import ConvSpec

    spec = ConvSpec((1, 64, 28, 28), 128, (3, 3), (2, 2), (1, 1, 1, 1))
    key = spec.key()
    assert model_shape("dense", key, spec.m) == ("conv1x1", spec.m)
    assert model_shape("csr", key, spec.m) == ("conv1x1", 14 * (14 + 1))
    assert model_shape("csr", "matmul", 7) == ("matmul", 7)
    timer = _FakeTimer()
    table = CalibrationTable("cpu", 1, path=tmp_path / "t.json")
    model = MeasuredCostModel(table, timer, perf=PerfModel("cpu", 1, path=tmp_path / "p.json"),
                              progress=lambda *a: None)
    dense = model.predict("dense", spec.m, 128, spec.reduction, kind=key)
    sparse = model.predict("csr", spec.m, 128, spec.reduction, density=0.1, kind=key)
    assert model.perf.get("csr", "conv1x1") is not None and model.perf.get("csr", key) is None
    assert sparse < dense
    built = timer.built
    assert model.refine("csr", spec.m, 128, spec.reduction, density=0.1, kind=key) is not None
    assert timer.built == built + 2 and any(k.startswith(f"csr|{key}|") for k in table.entries)
