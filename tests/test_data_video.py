import copy
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mnc_bench.data.check import check_coco_dataset
from mnc_bench.data.synthetic import ShapesConfig
from mnc_bench.data.video import VideoConfig, _camera_path, render_clip, write_video_dataset
from mnc_bench.data.video_check import check_dataset
from mnc_bench.data.video_format import convert_youtube_vis
from mnc_bench.errors import UserError


def _load(root, name):
    return json.loads((root / "annotations" / name).read_text())


def _decode(rle):
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_same_seed_gives_byte_identical_clips_and_another_seed_others(tmp_path, tiny_videos):
    write_video_dataset(tmp_path / "a", num_train=3, num_val=1, config=tiny_videos, workers=1)
    write_video_dataset(tmp_path / "b", num_train=3, num_val=1, config=tiny_videos, workers=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".png"]) >= 4 * 4
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = replace(tiny_videos, shapes=replace(tiny_videos.shapes, seed=4))
    write_video_dataset(tmp_path / "c", num_train=3, num_val=0, config=other, workers=1)
    assert (
        _load(tmp_path / "a", "ytvis_train.json")["annotations"]
        != _load(tmp_path / "c", "ytvis_train.json")["annotations"]
    )


def test_tracks_are_consistent_with_their_masks(video_dataset, tiny_videos):
    official = _load(video_dataset, "ytvis_val.json")
    lengths = {v["id"]: v["length"] for v in official["videos"]}
    masks = {}  # (video, frame) -> {track id: mask}
    for track in official["annotations"]:
        assert (
            len(track["segmentations"])
            == len(track["bboxes"])
            == len(track["areas"])
            == lengths[track["video_id"]]
        )
        for frame, (rle, box, area) in enumerate(
            zip(track["segmentations"], track["bboxes"], track["areas"])
        ):
            assert (rle is None) == (box is None) == (area is None)
            if rle is None:
                continue
            mask = _decode(rle)
            ys, xs = np.nonzero(mask)
            assert area == mask.sum() >= tiny_videos.shapes.min_visible_pixels
            assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            masks.setdefault((track["video_id"], frame), {})[track["id"]] = mask
    kept = 0
    for (video, frame), here in masks.items():
        stack = np.stack(list(here.values()))
        assert stack.sum(axis=0).max() <= 1  # visible masks: one object per pixel
        following = masks.get((video, frame + 1), {})
        for track_id, mask in here.items():
            if track_id not in following or len(following) < 2:
                continue
            # Motion is smooth: a track's next mask overlaps it more than any other object's next mask does.
            overlaps = {other: (mask & nxt).sum() / (mask | nxt).sum() for other, nxt in following.items()}
            assert max(overlaps, key=overlaps.get) == track_id
            kept += 1
    assert kept > 5
    # The COCO-video file holds the same masks, one per (frame, track), the instance id naming the track.
    coco_video = _load(video_dataset, "instances_val.json")
    frames = {img["id"]: (img["video_id"], img["frame_id"]) for img in coco_video["images"]}
    per_instance = {}
    for ann in coco_video["annotations"]:
        video, frame = frames[ann["image_id"]]
        per_instance.setdefault(ann["instance_id"], set()).add(
            next(t for t, m in masks[(video, frame)].items() if (m == _decode(ann["segmentation"])).all())
        )
        assert ann["video_id"] == video
    assert all(len(tracks) == 1 for tracks in per_instance.values())
    assert len(per_instance) == len(official["annotations"])


def test_frames_are_the_clips_pngs_in_youtube_vis_folders(video_dataset, tiny_videos):
    official = _load(video_dataset, "ytvis_train.json")
    for video in official["videos"]:
        assert tiny_videos.min_frames <= video["length"] <= tiny_videos.max_frames
        for name in video["file_names"]:
            pixels = np.asarray(Image.open(video_dataset / "train/JPEGImages" / name))
            assert pixels.shape == (64, 64, 3) and pixels.std() > 10


def test_objects_enter_and_leave_the_frame_and_occlude_each_other(tmp_path, tiny_videos):
    write_video_dataset(
        tmp_path / "d",
        num_train=30,
        num_val=0,
        config=replace(tiny_videos, min_frames=8, max_frames=12),
        workers=2,
    )
    tracks = _load(tmp_path / "d", "ytvis_train.json")["annotations"]
    present = [[s is not None for s in t["segmentations"]] for t in tracks]
    assert any(p[0] is False and any(p) for p in present)  # appears after the first frame
    assert any(p[-1] is False and any(p) for p in present)  # gone before the last
    # Crossing objects make this common: about half the tracks here (a third without them: occlusion, chance).
    assert np.mean([not (p[0] and p[-1]) for p in present]) >= 0.4
    # An object sometimes loses pixels to one painted over it: its visible area shrinks while it exists.
    assert any(min(a for a in t["areas"] if a) < 0.8 * max(a for a in t["areas"] if a) for t in tracks)


def test_camera_shake_moves_the_background_and_a_still_camera_does_not():
    still = VideoConfig(
        shapes=ShapesConfig(image_size=64, seed=0, max_objects=1, min_visible_pixels=1),
        min_frames=5,
        max_frames=5,
        camera_shake=0.0,
        sensor_noise=0.0,
    )
    for shake, moves in ((0.0, False), (2.0, True)):
        clip = render_clip(np.random.default_rng(5), replace(still, camera_shake=shake))
        objects = [np.any([m for m in per_frame if m is not None], axis=0) for per_frame in zip(*clip.masks)]
        background = ~np.any([o for o in objects if o is not None and o.ndim == 2], axis=0)
        changed = any(
            (np.abs(f.astype(int) - clip.frames[0].astype(int)).sum(-1) > 0)[background].mean() > 0.5
            for f in clip.frames[1:]
        )
        assert changed == moves
    path = _camera_path(np.random.default_rng(0), 50, replace(still, camera_shake=3.0))
    assert (
        path[0] == (0, 0)
        and max(max(abs(x), abs(y)) for x, y in path) <= VideoConfig(camera_shake=3.0).shake_margin
    )


def test_coco_video_file_loads_in_mmdet_youtube_vis_dataset(video_dataset):
    from mmdet.datasets import YouTubeVISDataset

    coco_video = _load(video_dataset, "instances_train.json")
    dataset = YouTubeVISDataset(
        dataset_version="2021",
        data_root=str(video_dataset),
        ann_file="annotations/instances_train.json",
        data_prefix=dict(img_path="train/JPEGImages"),
        metainfo=dict(classes=("circle", "triangle", "rectangle", "ring")),
        test_mode=True,
        pipeline=[],
        lazy_init=False,
    )
    assert len(dataset) == len(coco_video["videos"])
    frames = [image for i in range(len(dataset)) for image in dataset.get_data_info(i)["images"]]
    assert len(frames) == len(coco_video["images"])
    ids = {instance["instance_id"] for image in frames for instance in image["instances"]}
    assert ids == {ann["instance_id"] for ann in coco_video["annotations"]}
    assert all(image["img_path"].endswith(image["file_name"]) for image in frames)


def test_clean_video_files_pass_data_check_in_both_layouts(video_dataset):
    for name in ("ytvis_val.json", "instances_val.json"):
        report = check_dataset(
            video_dataset / "annotations" / name, images_dir=video_dataset / "val/JPEGImages"
        )
        assert report.ok, report.problems
        assert " 3 videos" in report.summary()
    # The COCO-video file is a clean per-frame COCO file too.
    assert check_coco_dataset(video_dataset / "annotations/instances_val.json").ok


def _short_segmentations(d):
    d["annotations"][0]["segmentations"].pop()
    return f"annotation id={d['annotations'][0]['id']}", "'segmentations' has"


def _length_disagrees(d):
    d["videos"][1]["length"] += 1
    return f"video id={d['videos'][1]['id']}", "'length'"


def _missing_video(d):
    d["annotations"][1]["video_id"] = 99
    return f"annotation id={d['annotations'][1]['id']}", "missing video"


def _frame_gap(d):
    first = next(i for i in d["images"] if i["frame_id"] == 1)
    first["frame_id"] = 7
    return f"video id={first['video_id']}", "frame_ids must be 0..length-1"


def _frame_of_missing_video(d):
    d["images"][0]["video_id"] = 42
    return f"image id={d['images'][0]['id']}", "missing video"


def _instance_changes_category(d):
    ann = d["annotations"][0]
    other = next(a for a in d["annotations"][1:] if a["instance_id"] == ann["instance_id"])
    other["category_id"] = ann["category_id"] % 4 + 1
    return f"annotation id={other['id']}", "changes category"


@pytest.mark.parametrize(
    "name, damage",
    [
        ("ytvis_val.json", _short_segmentations),
        ("ytvis_val.json", _length_disagrees),
        ("ytvis_val.json", _missing_video),
        ("instances_val.json", _frame_gap),
        ("instances_val.json", _frame_of_missing_video),
        ("instances_val.json", _instance_changes_category),
    ],
)
def test_data_check_names_the_broken_record(video_dataset, tmp_path, name, damage):
    data = copy.deepcopy(_load(video_dataset, name))
    where, what = damage(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    report = check_dataset(path)
    assert not report.ok
    assert any(line.startswith(f"{where}:") and what in line for line in report.problems), report.problems
    run = subprocess.run(
        [sys.executable, "-m", "mnc_bench.cli", "data", "check", str(path)], capture_output=True, text=True
    )
    assert run.returncode == 1 and where in run.stderr


def test_ytvis2coco_converts_and_refuses_a_broken_file_in_one_line(video_dataset, tmp_path):
    out = tmp_path / "coco_video.json"
    summary = convert_youtube_vis(video_dataset / "annotations/ytvis_val.json", out)
    assert "3 videos" in summary
    assert json.loads(out.read_text()) == _load(video_dataset, "instances_val.json")
    data = _load(video_dataset, "ytvis_val.json")
    _short_segmentations(data)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"annotations\[0\]|annotation id .*segmentations"):
        convert_youtube_vis(broken, tmp_path / "x.json")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnc_bench.cli",
            "data",
            "ytvis2coco",
            str(broken),
            "--out",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and run.stderr.startswith("error: ")
    assert not (tmp_path / "x.json").exists()


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="frames"):
        VideoConfig(min_frames=5, max_frames=3)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnc_bench.cli",
            "data",
            "synth-video",
            "--out",
            str(tmp_path / "v"),
            "--size",
            "16",
        ],
        capture_output=True,
        text=True,
    )
    assert (
        run.returncode == 2 and run.stderr.startswith("error: image_size") and not (tmp_path / "v").exists()
    )
