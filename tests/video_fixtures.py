"""A tiny video dataset generated once per test session (import the fixture into a test module to use it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnc_bench.data.synthetic import ShapesConfig
from mnc_bench.data.video import VideoConfig, write_video_dataset

TINY_VIDEOS = VideoConfig(
    shapes=ShapesConfig(image_size=64, seed=3, max_objects=4), min_frames=4, max_frames=6
)


@pytest.fixture(scope="session")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 train and 3 val clips of 4-6 frames at 64 px, in the layout of `mnc-bench data synth-video`;
    read-only."""
    root = tmp_path_factory.mktemp("videos") / "videos"
    write_video_dataset(root, num_train=6, num_val=3, config=TINY_VIDEOS, workers=1)
    return root
