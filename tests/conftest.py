"""Shared fixtures: a tiny shapes dataset generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes dataset (16 train, 8 val, 128 px) in COCO layout; treat it as read-only."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    write_shapes_dataset(root, num_train=16, num_val=8, config=ShapesConfig(image_size=128, seed=0), workers=1)
    return root
