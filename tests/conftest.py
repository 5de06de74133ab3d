"""Shared fixtures: a tiny shapes dataset generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset
from mnc_bench.models.mnc.window_kernels import COMPILE_ENV

# MNC's fused RoI pooling kernels run eagerly in tests (the same functions; compiling them for each tiny test
# model would take minutes): test_compiled_kernels_equal_the_eager_ones checks the compiled ones.
os.environ.setdefault(COMPILE_ENV, "0")


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes dataset (16 train, 8 val, 128 px) in COCO layout; treat it as read-only."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    write_shapes_dataset(root, num_train=16, num_val=8, config=ShapesConfig(image_size=128, seed=0), workers=1)
    return root
