"""`mnc-bench test --soft-masks`: the probabilities behind every scored mask as 8-bit PNGs with an index, the
scored masks unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

pytest.importorskip("mmcv.ops")

from mnc_bench.errors import UserError  # noqa: E402
from mnc_bench.models.mnc.cascade import CascadeOutput  # noqa: E402
from mnc_bench.models.mnc.postprocess import MNCPostProcessor  # noqa: E402
from mnc_bench.soft_masks import enable_soft_masks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _random_checkpoint(config: Path, path: Path) -> Path:
    """The config's model with its initial weights, saved as a checkpoint (random weights detect plenty)."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    from mnc_bench.config_loading import load_config

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(load_config(config).model)
    model.init_weights()
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    return path


def _decode(rle):
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_mnc_post_processor_returns_the_probabilities_it_binarises():
    torch.manual_seed(0)
    n = 6
    boxes = torch.tensor(
        [
            [4.0, 4, 40, 40],
            [10, 8, 50, 30],
            [20, 20, 60, 60],
            [0, 0, 20, 50],
            [5, 30, 60, 62],
            [30, 2, 62, 20],
        ]
    )
    instances = CascadeOutput(
        mask_boxes=boxes,
        mask_logits=torch.randn(n, 14, 14) * 3,
        class_probs=torch.softmax(torch.randn(n, 3), dim=1),
        class_boxes=boxes[:, None].repeat(1, 2, 1),
    )
    post = MNCPostProcessor(score_thr=0.05, mask_thr=0.4)
    plain = post(instances, image_size=(64, 64))
    post.soft_masks = True
    soft = post(instances, image_size=(64, 64))
    assert plain.soft_masks is None and torch.equal(plain.masks, soft.masks)
    assert soft.soft_masks.dtype == torch.uint8 and soft.soft_masks.shape == soft.masks.shape
    threshold = 255 * post.mask_thr  # floor(255 p) against p >= 0.4
    assert (soft.soft_masks[soft.masks] >= np.floor(threshold)).all()
    assert (soft.soft_masks[~soft.masks] <= np.ceil(threshold)).all()
    assert soft.soft_masks.float().std() > 0


def test_no_mask_head_no_soft_masks():
    with pytest.raises(UserError, match="--soft-masks: Linear has no mask head"):
        enable_soft_masks(torch.nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, threshold",
    [("configs/mnc/mnc_3stage_shapes.py", 0.4), ("configs/mask_rcnn/mask_rcnn_shapes.py", 0.5)],
)
def test_image_models_write_a_png_per_detection_and_leave_the_scored_masks_alone(
    config, threshold, shapes_dataset, tmp_path
):
    from mnc_bench.training import evaluate_checkpoint

    checkpoint = _random_checkpoint(ROOT / config, tmp_path / "random.pth")
    # The network sees 96 px: boxes and masks are rescaled to the 128 px images (scale factor 0.75).
    options = {"data_root": f"{shapes_dataset}/", "test_dataloader.dataset.pipeline.1.scale": (96, 96)}
    evaluate_checkpoint(
        ROOT / config, checkpoint, out=tmp_path / "plain.json", work_dir=tmp_path / "a", cfg_options=options
    )
    evaluate_checkpoint(
        ROOT / config,
        checkpoint,
        out=tmp_path / "with.json",
        work_dir=tmp_path / "b",
        cfg_options=options,
        soft_masks=tmp_path / "soft",
    )
    plain, records = (json.loads((tmp_path / name).read_text()) for name in ("plain.json", "with.json"))
    assert plain == records and records
    index = json.loads((tmp_path / "soft/index.json").read_text())
    assert index["kind"] == "image" and len(index["masks"]) == len(records)
    per_image: dict[int, list] = {}
    for record in records:
        per_image.setdefault(record["image_id"], []).append(record)
    for entry in index["masks"]:
        record = per_image[entry["image_id"]][entry["detection"]]
        assert (entry["score"], entry["category_id"]) == (
            pytest.approx(record["score"]),
            record["category_id"],
        )
        soft = np.asarray(Image.open(tmp_path / "soft" / entry["file"]))
        binary = _decode(record["segmentation"])
        assert soft.dtype == np.uint8 and soft.shape == binary.shape == (128, 128)
        assert (soft[binary] >= np.floor(255 * threshold)).all() and (
            soft[~binary] <= np.ceil(255 * threshold)
        ).all()


@pytest.mark.slow
def test_a_video_model_writes_a_png_per_frame_and_track(video_dataset, tmp_path):
    from mnc_bench.training import evaluate_checkpoint

    config = ROOT / "configs/video/masktrack_rcnn_shapes_video.py"
    checkpoint = _random_checkpoint(config, tmp_path / "random.pth")
    evaluate_checkpoint(
        config,
        checkpoint,
        out=tmp_path / "pred.json",
        work_dir=tmp_path / "t",
        cfg_options={"data_root": f"{video_dataset}/"},
        soft_masks=tmp_path / "soft",
    )
    records = json.loads((tmp_path / "pred.json").read_text())
    index = json.loads((tmp_path / "soft/index.json").read_text())
    assert index["kind"] == "video" and len(index["masks"]) == len(records)
    by_key = {(r["image_id"], r["track_id"]): r for r in records}
    frames = {
        img["id"]: img
        for img in json.loads((video_dataset / "annotations/instances_val.json").read_text())["images"]
    }
    for entry in index["masks"]:
        record = by_key[entry["image_id"], entry["track_id"]]
        assert entry["score"] == pytest.approx(record["score"])
        assert (entry["video_id"], entry["frame_id"]) == (
            frames[entry["image_id"]]["video_id"],
            frames[entry["image_id"]]["frame_id"],
        )
        assert entry["file"] == f"{entry['video_id']}/{entry['track_id']}/{entry['frame_id']}.png"
        soft = np.asarray(Image.open(tmp_path / "soft" / entry["file"]))
        binary = _decode(record["segmentation"])
        assert (soft[binary] >= 127).all() and (soft[~binary] <= 128).all()


def test_soft_masks_refuse_a_non_empty_folder_in_one_line(tmp_path, capsys):
    from mnc_bench.cli import main

    (tmp_path / "soft").mkdir()
    (tmp_path / "soft" / "x.png").write_bytes(b"")
    (tmp_path / "ckpt.pth").write_bytes(b"")
    code = main(
        [
            "test",
            str(ROOT / "configs/mnc/mnc_3stage_shapes.py"),
            str(tmp_path / "ckpt.pth"),
            "--soft-masks",
            str(tmp_path / "soft"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --soft-masks ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "soft"]  # no staging folder left behind
