"""Profile categories: a layer's own kernel by the manifest, TVM's fused functions by name."""

from __future__ import annotations

import numpy as np
import pytest

from sparseforge.runtime.profile import CATEGORIES, KernelTime, Profile, category, random_feeds


def test_categories() -> None:
    assert category("sf_fc1", {"fmt": "csr"}) == "sparse layers"
    assert category("sf_long", {"fmt": "fft"}) == "structured layers"
    assert category("fused_sf_conv2d_nchwc1_add2_relu1", None) == "dense conv / matmul"
    assert category("fused_matmul3_add", None) == "dense conv / matmul"
    assert category("te_layout_transform_with_pad", None) == "layout transforms"
    assert category("vm.builtin.alloc_tensor", None) == "VM runtime"
    assert category("max_pool2d", None) == CATEGORIES[-1]


def test_profile_sums_by_category_and_node() -> None:
    p = Profile(1e-3, [KernelTime("sf_a", "sparse layers", 2e-4, 1, "a"), KernelTime("sf_a_2", "sparse layers",
                                                                                      1e-4, 1, "a"),
                       KernelTime("conv", "dense conv / matmul", 5e-4, 2)], 2)
    assert p.by_node == pytest.approx({"a": 3e-4})
    assert p.by_category == pytest.approx({"sparse layers": 3e-4, "dense conv / matmul": 5e-4})
    d = p.to_dict()
    assert d["threads"] == 2 and len(d["kernels"]) == 3


def test_random_feeds_follow_the_manifest() -> None:
    feeds = random_feeds({"inputs": [{"name": "x", "shape": [2, 3], "dtype": "float32"},
                                     {"name": "ids", "shape": [4], "dtype": "int64"}]})
    assert feeds["x"].shape == (2, 3) and feeds["x"].dtype == np.float32 and feeds["ids"].dtype == np.int64
