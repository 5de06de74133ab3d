"""Video metrics on hand-made tracks: video AP against mmdet's YouTubeVISMetric, the tracking measures and the
mask-stability measure against numbers worked out by hand, and bad input."""

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.evaluation.video import evaluate_video, spatio_temporal_iou
from mnc_bench.evaluation.video_io import load_video_ground_truth

SIZE = 32
CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "ring"}]


def box_mask(x0, y0, x1, y1):
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def rle(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [SIZE, SIZE], "counts": encoded["counts"].decode("ascii")}


def coco_video(tracks, lengths):
    """tracks: {instance_id: (video_id, category_id, {frame: mask})}; lengths: {video_id: frames}."""
    images, frame_ids = [], {}
    for video_id, length in lengths.items():
        for frame in range(length):
            frame_ids[video_id, frame] = len(images) + 1
            images.append(
                {
                    "id": len(images) + 1,
                    "video_id": video_id,
                    "frame_id": frame,
                    "width": SIZE,
                    "height": SIZE,
                    "file_name": f"{video_id}/{frame}.png",
                }
            )
    annotations = []
    for instance_id, (video_id, category_id, masks) in tracks.items():
        for frame, mask in masks.items():
            x, y, w, h = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask))).tolist()
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": frame_ids[video_id, frame],
                    "video_id": video_id,
                    "instance_id": instance_id,
                    "category_id": category_id,
                    "segmentation": rle(mask),
                    "area": int(mask.sum()),
                    "bbox": [x, y, w, h],
                    "iscrowd": 0,
                }
            )
    videos = [{"id": v, "name": str(v), "width": SIZE, "height": SIZE} for v in lengths]
    return {
        "videos": videos,
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }, frame_ids


def predictions(frame_ids, tracks):
    """tracks: {track_id: (video_id, {frame: (category_id, score, mask)})} -> tracked result records."""
    return [
        {
            "image_id": frame_ids[video_id, frame],
            "category_id": category_id,
            "score": score,
            "segmentation": rle(mask),
            "track_id": track_id,
        }
        for track_id, (video_id, per_frame) in tracks.items()
        for frame, (category_id, score, mask) in per_frame.items()
    ]


A = [box_mask(2 + 2 * t, 2, 12 + 2 * t, 12) for t in range(4)]  # 100 px, moving right
B = [box_mask(18, 18, 26, 26)] * 2  # 64 px, gone after frame 1
C = [box_mask(4, 20, 14, 30) for _ in range(3)]


@pytest.fixture
def scene():
    """Video 1: track 1 (circle, 4 frames), track 2 (ring, frames 0-1 only: it disappears); video 2: track
    3."""
    return coco_video(
        {1: (1, 1, dict(enumerate(A))), 2: (1, 2, {0: B[0], 1: B[1]}), 3: (2, 1, dict(enumerate(C)))},
        {1: 4, 2: 3},
    )


def hand_made_predictions(frame_ids):
    """An ID switch on track 1 (11 then 12), track 2 followed beyond its end (13), a track with an empty mask
    in one frame (14, wrong class in one frame too), and nothing at all for video 2 (an empty prediction)."""
    shrunk = box_mask(4, 2, 12, 12)  # 80 px inside A[1]
    return predictions(
        frame_ids,
        {
            11: (1, {0: (1, 0.9, A[0]), 1: (1, 0.8, shrunk)}),
            12: (1, {2: (1, 0.9, A[2]), 3: (1, 0.7, A[3])}),
            13: (1, {0: (2, 0.95, B[0]), 1: (2, 0.9, B[1]), 2: (2, 0.6, B[1]), 3: (2, 0.3, B[1])}),
            14: (1, {0: (1, 0.2, A[0]), 1: (2, 0.4, np.zeros((SIZE, SIZE), np.uint8)), 2: (1, 0.3, A[2])}),
        },
    )


def reference_metric(gt, records, monkeypatch):
    """mmdet 3.3's YouTubeVISMetric fed as its test loop feeds it (one whole video per call to process_video).
    Its YouTube-VIS API calls np.float, gone since numpy 1.24: given back for the reference only."""
    import torch
    from mmdet.evaluation.metrics import YouTubeVISMetric
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    monkeypatch.setattr(np, "float", float, raising=False)
    metric = YouTubeVISMetric(metric_items=["mAP", "mAP_50", "mAP_75", "AR@1", "AR@10"])
    metric.dataset_meta = {"classes": tuple(c["name"] for c in CATEGORIES)}
    by_image = {}
    for record in records:
        by_image.setdefault(record["image_id"], []).append(record)
    for video in gt["videos"]:
        frames = sorted(
            (i for i in gt["images"] if i["video_id"] == video["id"]), key=lambda i: i["frame_id"]
        )
        samples = []
        for image in frames:
            found = by_image.get(image["id"], [])
            masks = [
                mask_utils.decode(
                    {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}
                )
                for r in found
            ]
            sample = DetDataSample(
                metainfo=dict(
                    img_id=image["id"],
                    video_id=video["id"],
                    ori_shape=(SIZE, SIZE),
                    ori_video_length=len(frames),
                    instances=[
                        {
                            "bbox_label": a["category_id"] - 1,
                            "instance_id": a["instance_id"],
                            "ignore_flag": 0,
                            "bbox": [
                                a["bbox"][0],
                                a["bbox"][1],
                                a["bbox"][0] + a["bbox"][2],
                                a["bbox"][1] + a["bbox"][3],
                            ],
                            "mask": a["segmentation"],
                        }
                        for a in gt["annotations"]
                        if a["image_id"] == image["id"]
                    ],
                )
            )
            sample.pred_track_instances = InstanceData(
                bboxes=torch.zeros(len(found), 4),
                scores=torch.tensor([r["score"] for r in found]),
                labels=torch.tensor([r["category_id"] - 1 for r in found], dtype=torch.long),
                instances_id=torch.tensor([r["track_id"] for r in found], dtype=torch.long),
                masks=torch.from_numpy(np.stack(masks).astype(bool))
                if masks
                else torch.zeros(0, SIZE, SIZE, dtype=torch.bool),
            )
            samples.append(sample)
        metric.process_video(samples)
    return metric.compute_metrics(metric.results)


def test_video_ap_equals_mmdet_youtube_vis_metric_on_hand_made_tracks(scene, monkeypatch):
    gt, frame_ids = scene
    records = hand_made_predictions(frame_ids)
    ours = evaluate_video(gt, records)
    reference = reference_metric(gt, records, monkeypatch)
    pairs = {"AP": "mAP", "AP50": "mAP_50", "AP75": "mAP_75", "AR1": "AR@1", "AR10": "AR@10"}
    for key, theirs in pairs.items():
        assert ours[f"vis/{key}"] == pytest.approx(reference[f"segm_{theirs}"], abs=5e-4), key  # mmdet rounds
    assert 0 < ours["vis/AP"] < 1  # a case that tells numbers apart


def test_video_ap_reacts_to_a_better_track_as_the_reference_does(scene, monkeypatch):
    gt, frame_ids = scene
    records = hand_made_predictions(frame_ids)
    # Track 11 takes frames 2-3 too (no ID switch): one whole track where there were two halves.
    merged = [dict(r, track_id=11) if r["track_id"] == 12 else r for r in records]
    ours, reference = evaluate_video(gt, merged), reference_metric(gt, merged, monkeypatch)
    assert ours["vis/AP"] == pytest.approx(reference["segm_mAP"], abs=5e-4)
    assert ours["vis/AP"] > evaluate_video(gt, records)["vis/AP"]


def test_spatio_temporal_iou_of_a_track_that_disappears():
    gt_track = [rle(B[0]), rle(B[1]), None, None]
    followed_on = [rle(B[0]), rle(B[1]), rle(B[1]), rle(B[1])]
    # Exact on its two frames, then 64 px of extra prediction in each of two frames: 128 / (128 + 128).
    assert spatio_temporal_iou(gt_track, followed_on) == 0.5
    assert spatio_temporal_iou(gt_track, [None, rle(B[1]), None, None]) == 0.5


def test_tracking_measures_count_the_id_switch_and_score_only_confident_instances(scene):
    gt, frame_ids = scene
    results = evaluate_video(gt, hand_made_predictions(frame_ids))
    # Confident (score >= 0.5) instances: 11 (2 frames), 12 (2), 13 (3: its frame-3 instance scores 0.3).
    # 9 ground-truth masks; matches at IoU >= 0.5: track 1 in 4 frames (one switch 11 -> 12), track 2 in 2;
    # 13's frame-2 instance matches nothing (FP).
    assert results["vis/mots/IDSW"] == 1
    assert results["vis/mots/MOTSA"] == pytest.approx((6 - 1 - 1) / 9)
    soft_tp = 1 + 0.8 + 1 + 1 + 1 + 1  # the shrunk mask has IoU 80 / 100
    assert results["vis/mots/sMOTSA"] == pytest.approx((soft_tp - 1 - 1) / 9)
    assert results["vis/hota/AssA"] < 1 and results["vis/idf1"] < 1
    # Without the switch the identity measures improve and the switch is gone.
    merged = [dict(r, track_id=11) if r["track_id"] == 12 else r for r in hand_made_predictions(frame_ids)]
    better = evaluate_video(gt, merged)
    assert better["vis/mots/IDSW"] == 0 and better["vis/hota/AssA"] > results["vis/hota/AssA"]
    assert better["vis/idf1"] > results["vis/idf1"]


def test_a_prediction_of_another_class_matches_nothing_and_overlaps_are_resolved_by_score(scene):
    gt, frame_ids = scene
    wrong_class = predictions(frame_ids, {1: (2, {0: (2, 0.9, C[0]), 1: (2, 0.9, C[1]), 2: (2, 0.9, C[2])})})
    assert evaluate_video(gt, wrong_class)["vis/mots/MOTSA"] == pytest.approx(-3 / 9)  # 3 FP, 0 TP
    # A confident duplicate covering track 3's masks entirely hides the correct lower-scoring one (MOTS masks
    # do not overlap): the correct track no longer matches.
    cover = box_mask(0, 16, 20, 32)
    duplicated = predictions(
        frame_ids,
        {1: (2, {t: (1, 0.6, C[t]) for t in range(3)}), 2: (2, {t: (1, 0.9, cover) for t in range(3)})},
    )
    results = evaluate_video(gt, duplicated)
    assert results["vis/mots/MOTSA"] == pytest.approx((0 - 6) / 9)
    assert results["vis/AP50"] > 0  # video AP scores the masks as given


def test_stability_is_the_mean_frame_to_frame_change_of_the_partner_iou(scene):
    gt, frame_ids = scene
    # Track 1 followed by one track whose IoU goes 1, 0.8, 1, 0.8 (the shrunk 80 px masks in frames 1 and 3).
    wobbly = {t: (1, 0.9, A[t] if t % 2 == 0 else box_mask(4 + 2 * t, 2, 12 + 2 * t, 12)) for t in range(4)}
    results = evaluate_video(gt, predictions(frame_ids, {1: (1, wobbly)}))
    assert results["vis/stability/pairs"] == 3
    assert results["vis/stability/iou_change"] == pytest.approx(0.2)
    steady = evaluate_video(gt, predictions(frame_ids, {1: (1, {t: (1, 0.9, A[t]) for t in range(4)})}))
    assert steady["vis/stability/iou_change"] == 0
    # A mask that blinks out in frame 2 (exact elsewhere): IoU 1, 1, 0, 1 -> changes 0, 1, 1.
    blinking = evaluate_video(gt, predictions(frame_ids, {1: (1, {t: (1, 0.9, A[t]) for t in (0, 1, 3)})}))
    assert blinking["vis/stability/iou_change"] == pytest.approx(2 / 3)
    assert blinking["vis/stability/pairs"] == 3


def test_no_predictions_score_zero_not_an_error(scene):
    gt, _ = scene
    results = evaluate_video(gt, [])
    assert results["vis/AP"] == 0 and results["vis/frame/AP"] == 0 and results["vis/mots/MOTSA"] == 0
    assert math.isnan(results["vis/stability/iou_change"])


def test_perfect_predictions_score_one(scene):
    gt, frame_ids = scene
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "score": 0.9,
            "segmentation": a["segmentation"],
            "track_id": a["instance_id"],
        }
        for a in gt["annotations"]
    ]
    results = evaluate_video(gt, perfect)
    for key in ("vis/AP", "vis/AP75", "vis/frame/AP", "vis/mots/sMOTSA", "vis/hota/HOTA", "vis/idf1"):
        assert results[key] == pytest.approx(1.0), key


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r[0].update(image_id=999), "'image_id' 999 is not a frame of the ground truth's videos"),
        (lambda r: r[0].update(track_id="a"), "'track_id' must be an integer"),
        (lambda r: r[0].pop("segmentation"), "missing 'segmentation'"),
        (
            lambda r: r[1].update(track_id=r[0]["track_id"], image_id=r[0]["image_id"]),
            "two instances in this frame",
        ),
    ],
)
def test_bad_predictions_are_one_line_errors_naming_the_record(scene, change, message):
    gt, frame_ids = scene
    records = hand_made_predictions(frame_ids)
    change(records)
    with pytest.raises(UserError, match="record [01]") as error:
        evaluate_video(gt, records)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_bad_frame_record_in_a_file_is_named_with_the_file(scene, tmp_path):
    # the per-frame checks (score, mask) run after the track checks, on the same records
    gt, frame_ids = scene
    records = hand_made_predictions(frame_ids)
    records[0]["score"] = None
    path = tmp_path / "tracked.json"
    path.write_text(json.dumps(records))
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: record 0 .*'score'"):
        evaluate_video(gt, path)


def test_a_track_in_two_videos_is_refused(scene):
    gt, frame_ids = scene
    records = predictions(frame_ids, {5: (1, {0: (1, 0.9, A[0])})}) + predictions(
        frame_ids, {5: (2, {0: (1, 0.9, C[0])})}
    )
    with pytest.raises(UserError, match="record 1 .*track_id 5 is in video id 2 and video id 1"):
        evaluate_video(gt, records)


def test_bad_ground_truth_is_refused_in_one_line(scene):
    gt, _ = scene
    gt["images"][0]["video_id"] = 7
    with pytest.raises(UserError, match="images\\[0\\]|image id 1: 'video_id' 7 is not in 'videos'"):
        load_video_ground_truth(gt)
    with pytest.raises(UserError, match="official YouTube-VIS"):
        load_video_ground_truth({"videos": [], "annotations": [], "categories": []})


def test_cli_evaluate_video_prints_json_and_refuses_a_missing_frame(scene, tmp_path):
    gt, frame_ids = scene
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    records = hand_made_predictions(frame_ids)
    (tmp_path / "pred.json").write_text(json.dumps(records))
    cli = [
        sys.executable,
        "-m",
        "mnc_bench.cli",
        "evaluate-video",
        "--gt",
        str(tmp_path / "gt.json"),
        "--pred",
        str(tmp_path / "pred.json"),
    ]
    run = subprocess.run([*cli, "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["vis/mots/IDSW"] == 1
    records[2]["image_id"] = 77
    (tmp_path / "pred.json").write_text(json.dumps(records))
    run = subprocess.run(cli, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
    assert "record 2" in run.stderr and "'image_id' 77" in run.stderr


def test_metric_numbers_tracks_per_file_and_splits_a_track_given_twice_in_a_frame():
    from mnc_bench.evaluation.video_metric import file_track_ids

    entries = [  # per-video track numbers from 0, as the models give them; video 2 reuses 0
        {"image_id": 1, "video_id": 1, "scores": np.array([0.9, 0.5]), "track_ids": np.array([0, 1])},
        {"image_id": 2, "video_id": 1, "scores": np.array([0.4, 0.8]), "track_ids": np.array([1, 1])},
        {"image_id": 3, "video_id": 2, "scores": np.array([0.7]), "track_ids": np.array([0])},
    ]
    ids = file_track_ids(entries)
    assert ids[1] == [1, 2] and ids[3] == [4]
    # Frame 2 gives track 1 twice: the better scoring instance (0.8) keeps it, the other becomes track 3.
    assert ids[2] == [3, 2]


def test_a_track_is_ranked_by_its_mean_frame_score_as_in_the_reference(scene, monkeypatch):
    gt, frame_ids = scene
    # For track 1: a right track of steady middling scores and a wrong one (frame 0 exact, then elsewhere)
    # with one very confident frame. By mean score the right one ranks first (AP 1 for its class); by the best
    # frame score the wrong one would.
    elsewhere = box_mask(20, 2, 30, 12)
    records = predictions(
        frame_ids,
        {
            1: (1, {t: (1, 0.6, A[t]) for t in range(4)}),
            2: (
                1,
                {0: (1, 0.95, A[0]), 1: (1, 0.1, elsewhere), 2: (1, 0.1, elsewhere), 3: (1, 0.1, elsewhere)},
            ),
            3: (2, {t: (1, 0.9, C[t]) for t in range(3)}),
            4: (1, {0: (2, 0.9, B[0]), 1: (2, 0.9, B[1])}),
        },
    )
    ours, reference = evaluate_video(gt, records), reference_metric(gt, records, monkeypatch)
    assert ours["vis/AP"] == pytest.approx(1.0) and reference["segm_mAP"] == pytest.approx(1.0, abs=5e-4)
