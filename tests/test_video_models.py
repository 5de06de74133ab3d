"""The video models: mask-IoU linking, Video MNC's seeding and association, the adapters on mmdet's video
batches, and a short train + test of every video config (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmcv.ops")
from mmdet.structures import DetDataSample, TrackDataSample  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from mnc_bench.config_loading import load_config  # noqa: E402
from mnc_bench.errors import ConfigError  # noqa: E402
from mnc_bench.models.linking import MaskIoULinker  # noqa: E402
from mnc_bench.models.mnc.cascade import CascadeOutput  # noqa: E402
from mnc_bench.models.mnc.postprocess import Detections  # noqa: E402
from mnc_bench.models.mnc.temporal import NO_TRACK, TemporalSeeding  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "video"
VIDEO_CONFIGS = sorted(CONFIGS.glob("*.py"))
SMALL_HEADS = dict(warp_size=14, mask_size=14, mask_hidden_dim=32, cls_fc_dim=32)


def square(x, y, side=10, size=64):
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y : y + side, x : x + side] = True
    return mask


# ------------------------------------------------------------------------------------------------------------
# Mask-IoU linking
# ------------------------------------------------------------------------------------------------------------


def test_linker_follows_moving_objects_and_keeps_a_briefly_lost_one():
    linker = MaskIoULinker(min_iou=0.3, max_age=2)
    first = linker.step(torch.stack([square(5, 5), square(40, 40)]))
    assert first.tolist() == [0, 1]
    # Both moved by 2 px and come in the other order: identities follow the masks.
    assert linker.step(torch.stack([square(42, 40), square(7, 5)])).tolist() == [1, 0]
    # Object 0 is missed in one frame and comes back: it was seen in one of the last max_age = 2 frames.
    assert linker.step(torch.stack([square(44, 40)])).tolist() == [1]
    assert linker.step(torch.stack([square(9, 5), square(46, 40)])).tolist() == [0, 1]
    # A mask that overlaps no track enough starts a new one; after a reset numbering starts again.
    assert linker.step(torch.stack([square(20, 20)])).tolist() == [2]
    linker.reset()
    assert linker.step(torch.stack([square(9, 5)])).tolist() == [0]


def test_linker_drops_a_track_not_seen_in_the_last_max_age_frames():
    for missed, expected in ((1, 0), (2, 1)):
        linker = MaskIoULinker(min_iou=0.3, max_age=2)
        linker.step(torch.stack([square(5, 5)]))
        for _ in range(missed):
            linker.step(torch.zeros(0, 64, 64, dtype=torch.bool))
        assert linker.step(torch.stack([square(5, 5)])).tolist() == [expected]


def test_linker_assignment_is_optimal_not_greedy():
    linker = MaskIoULinker(min_iou=0.1)
    wide = torch.zeros(64, 64, dtype=torch.bool)
    wide[0:10, 0:30] = True
    narrow = square(0, 0, side=10)
    linker.step(torch.stack([wide, narrow]))  # tracks 0 (wide) and 1 (narrow)
    # The new mask A overlaps the narrow track best (IoU 1) but the wide one too (1/3); mask B only the wide
    # one. Greedy matching of A first would still work; matching B first by its best would too. The optimum
    # gives A -> 1 and B -> 0, each IoU above min_iou.
    b = torch.zeros(64, 64, dtype=torch.bool)
    b[0:10, 10:30] = True
    assert linker.step(torch.stack([narrow, b])).tolist() == [1, 0]


# ------------------------------------------------------------------------------------------------------------
# Temporal seeding and association (plain tensors)
# ------------------------------------------------------------------------------------------------------------


def _detections(instance_ids, labels, scores, boxes):
    n = len(instance_ids)
    return Detections(
        boxes=torch.tensor(boxes, dtype=torch.float32),
        scores=torch.tensor(scores),
        labels=torch.tensor(labels),
        masks=torch.zeros(n, 8, 8, dtype=torch.bool),
        instance_ids=torch.tensor(instance_ids),
    )


def test_seeding_joins_or_replaces_the_rpn_proposals_with_the_last_final_boxes():
    rpn = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    for mode in ("join", "replace"):
        seeding = TemporalSeeding(mode=mode)
        seeding.reset()
        first = seeding.seed(rpn, scale=(2.0, 2.0))
        assert (
            torch.equal(first.proposals, rpn) and (first.tracks == NO_TRACK).all()
        )  # nothing to propagate yet
        output = CascadeOutput(
            mask_boxes=rpn.repeat(2, 1),
            mask_logits=torch.zeros(4, 4, 4),
            class_probs=torch.tensor([[0.1, 0.9], [0.1, 0.9]] * 2),
            class_boxes=rpn.repeat(2, 1)[:, None],
        )
        seeding.associate(
            first, output, _detections([0], [0], [0.9], [[1, 1, 6, 6]]), score_thr=0.05, nms_iou=0.3
        )
        second = seeding.seed(rpn, scale=(2.0, 2.0))
        propagated = torch.tensor([[2.0, 2, 12, 12]])  # the final box in output pixels, scaled to the input
        expected = propagated if mode == "replace" else torch.cat((rpn, propagated))
        assert torch.equal(second.proposals, expected)
        assert second.tracks.tolist() == ([0] if mode == "replace" else [NO_TRACK, NO_TRACK, 0])


def test_association_follows_the_seeding_through_nms():
    seeding = TemporalSeeding(mode="join", max_age=2)
    seeding.reset()
    seeding._next_id = 10
    # 3 RPN proposals and 2 propagated ones (tracks 7 and 9); two rounds -> 10 instances, instance i from
    # proposal i % 5. Instance 4 (track 9) overlaps instance 6 (RPN proposal 1, round 2).
    seeds = TemporalSeeding.__annotations__ and None
    from mnc_bench.models.mnc.temporal import Seeds

    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [40, 40, 60, 60], [80, 80, 90, 90], [0, 0, 10, 10], [41, 41, 60, 60]]
    )
    seeds = Seeds(proposals=boxes, tracks=torch.tensor([NO_TRACK, NO_TRACK, NO_TRACK, 7, 9]))
    probs = torch.tensor([[0.5, 0.5, 0.0]] * 10)
    probs[4] = torch.tensor([0.3, 0.7, 0.0])  # track 9's instance: class 0 at 0.7
    probs[6] = torch.tensor([0.1, 0.9, 0.0])  # the RPN instance beside it wins NMS at 0.9
    output = CascadeOutput(
        mask_boxes=boxes.repeat(2, 1),
        mask_logits=torch.zeros(10, 4, 4),
        class_probs=probs,
        class_boxes=boxes.repeat(2, 1)[:, None].repeat(1, 2, 1),
    )
    detections = _detections(
        instance_ids=[6, 3, 8, 2, 0],  # RPN-suppressor of track 9; seeded by 7; seeded by 7 again (round 2);
        labels=[0, 0, 0, 0, 1],  # an unseeded RPN instance; another class of proposal 0
        scores=[0.9, 0.5, 0.6, 0.5, 0.5],
        boxes=[[40, 40, 60, 60], [0, 0, 10, 10], [0, 0, 10, 10], [80, 80, 90, 90], [0, 0, 10, 10]],
    )
    ids = seeding.associate(seeds, output, detections, score_thr=0.05, nms_iou=0.3)
    # 6 suppressed track 9's instance; track 7 goes to its better scoring detection (8: 0.6), the other (3)
    # starts a track; the unseeded detections start tracks in score order.
    assert ids.tolist() == [9, 10, 7, 11, 12]


def test_seeding_settings_are_config_errors():
    from mnc_bench.models.mnc import ParameterError

    with pytest.raises(ParameterError, match="seeding.mode"):
        TemporalSeeding(mode="both")


# ------------------------------------------------------------------------------------------------------------
# The adapters on mmdet's video batches
# ------------------------------------------------------------------------------------------------------------


def _build(config: Path):
    """The config's model, small and fast at test time: narrow MNC heads, 20 proposals, 5 final instances."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    cfg = load_config(config)
    detector = cfg.model.detector
    detector.test_cfg.rpn.max_per_img = 20
    if detector.get("type") == "MNC":
        detector.cascade.update(SMALL_HEADS)
        detector.test_cfg.rcnn.max_per_img = 5
    else:
        detector.test_cfg.rcnn.max_per_img = 5
    with DefaultScope.overwrite_default_scope("mmdet"):
        model = MODELS.build(cfg.model)
    return model.eval()


def _clip(frames=3, size=64):
    torch.manual_seed(0)
    inputs = torch.rand(1, frames, 3, size, size) * 255
    samples = []
    for t in range(frames):
        sample = DetDataSample(
            metainfo=dict(
                frame_id=t,
                img_id=t + 1,
                video_id=1,
                ori_shape=(size, size),
                img_shape=(size, size),
                scale_factor=(1.0, 1.0),
                batch_input_shape=(size, size),
                pad_shape=(size, size),
                ori_video_length=frames,
            )
        )
        sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
        samples.append(sample)
    return inputs, [TrackDataSample(video_data_samples=samples)]


def test_video_mnc_propagated_proposals_reach_stage_2():
    model = _build(CONFIGS / "video_mnc_shapes_video.py")
    model.detector.postprocessor.score_thr = 0.0  # random weights: keep every instance final
    warped = []
    original = model.detector.cascade.roi_warp.pooled  # what each round calls (warp fused with pooling)

    def record(features, boxes, **sizes):
        warped.append([b.detach().clone() for b in boxes])
        return original(features, boxes, **sizes)

    model.detector.cascade.roi_warp.pooled = record
    inputs, samples = _clip()
    with torch.no_grad():
        model.predict(
            model.data_preprocessor(dict(inputs=[inputs[0]], data_samples=samples))["inputs"], samples
        )
    frames = samples[0]
    finals = frames[0].pred_instances.bboxes
    assert len(finals) > 0
    # Frame 1's first round (the third warp call: frame 0 ran two rounds) saw frame 0's final boxes after the
    # RPN's.
    stage2_boxes = warped[2][0]
    assert torch.allclose(stage2_boxes[-len(finals) :], finals)
    assert len(stage2_boxes) == len(warped[0][0]) + len(finals)
    tracks = [f.pred_track_instances.instances_id for f in frames]
    assert len(set(tracks[1].tolist()) & set(tracks[0].tolist())) > 0  # seeded detections continue tracks
    for frame in frames:
        assert len(set(frame.pred_track_instances.instances_id.tolist())) == len(frame.pred_track_instances)
    # The next clip starts afresh: nothing of the last clip is propagated into its first frame.
    calls = len(warped)
    inputs, again = _clip()
    with torch.no_grad():
        model.predict(model.data_preprocessor(dict(inputs=[inputs[0]], data_samples=again))["inputs"], again)
    assert len(warped[calls][0]) == len(warped[0][0])
    assert torch.equal(again[0][0].pred_track_instances.instances_id, tracks[0])


def test_video_mnc_training_puts_the_reference_frame_boxes_among_the_proposals():
    model = _build(CONFIGS / "video_mnc_shapes_video.py").train()
    seen = {}
    original = model.detector.cascade.loss

    def record(features, proposals, targets, image_sizes, **options):
        seen["proposals"] = [p.detach().clone() for p in proposals]
        return original(features, proposals, targets, image_sizes, **options)

    model.detector.cascade.loss = record
    frames = []
    reference_boxes = torch.tensor([[5.0, 6, 20, 30], [30, 30, 50, 44]])
    for t, boxes in enumerate((torch.tensor([[6.0, 6, 21, 30], [32, 30, 52, 44]]), reference_boxes)):
        sample = DetDataSample(
            metainfo=dict(
                frame_id=t,
                img_shape=(64, 64),
                batch_input_shape=(64, 64),
                pad_shape=(64, 64),
                scale_factor=(1.0, 1.0),
            )
        )
        masks = np.zeros((2, 64, 64), dtype=np.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[k, y0:y1, x0:x1] = 1
        from mmdet.structures.mask import BitmapMasks

        sample.gt_instances = InstanceData(
            bboxes=boxes,
            labels=torch.tensor([0, 1]),
            masks=BitmapMasks(masks, 64, 64),
            instances_ids=torch.tensor([1, 2]),
        )
        frames.append(sample)
    clip = TrackDataSample(video_data_samples=frames, key_frames_inds=[0], ref_frames_inds=[1])
    losses = model.loss(torch.rand(1, 2, 3, 64, 64), [clip])
    assert torch.equal(seen["proposals"][0][-2:], reference_boxes)
    assert all(
        torch.isfinite(v).all()
        for v in (
            losses[k] if isinstance(losses[k], torch.Tensor) else torch.stack(losses[k])
            for k in losses
            if "loss" in k
        )
    )


def test_frame_link_vis_links_every_frame_and_refuses_clips_in_training():
    model = _build(CONFIGS / "mask_rcnn_linked_shapes_video.py")
    model.detector.test_cfg.rcnn.score_thr = 0.0
    inputs, samples = _clip()
    with torch.no_grad():
        model.predict(inputs, samples)
    for frame in samples[0]:
        tracked = frame.pred_track_instances
        assert len(tracked) == len(frame.pred_instances) and "instances_id" in tracked
    with pytest.raises(ConfigError, match="single frames"):
        model.loss(inputs, samples)


def test_video_mnc_needs_an_mnc_detector():
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    cfg = load_config(CONFIGS / "video_mnc_shapes_video.py")
    cfg.model.detector = load_config(CONFIGS / "mask_rcnn_linked_shapes_video.py").model.detector
    with (
        DefaultScope.overwrite_default_scope("mmdet"),
        pytest.raises(ConfigError, match="VideoMNC seeds MNC"),
    ):
        MODELS.build(cfg.model)


# ------------------------------------------------------------------------------------------------------------
# Short train + test of each video config
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("config", VIDEO_CONFIGS, ids=lambda p: p.stem)
def test_short_train_and_test_of_each_video_model(config, video_dataset, tmp_path):
    from mnc_bench.evaluation.video import evaluate_video
    from mnc_bench.training import evaluate_checkpoint, train

    options = {
        "data_root": f"{video_dataset}/",
        "train_cfg.max_iters": 2,
        "train_cfg.val_interval": 2,
        "train_dataloader.batch_size": 2,
        "val_cfg": None,
        "val_dataloader": None,
        "val_evaluator": None,
    }
    result = train(config, work_dir=tmp_path / "train", cfg_options=options)
    assert result.checkpoint is not None and result.checkpoint.is_file()
    evaluated = evaluate_checkpoint(
        config,
        result.checkpoint,
        out=tmp_path / "pred.json",
        work_dir=tmp_path / "test",
        cfg_options={"data_root": f"{video_dataset}/"},
    )
    for key in ("vis/AP", "vis/frame/AP", "vis/mots/sMOTSA", "vis/hota/AssA", "vis/stability/iou_change"):
        assert key in evaluated.metrics
    records = json.loads((tmp_path / "pred.json").read_text())
    assert records and {"image_id", "track_id", "segmentation", "score"} <= set(records[0])
    rescored = evaluate_video(video_dataset / "annotations/instances_val.json", records)
    assert rescored["vis/AP"] == pytest.approx(evaluated.metrics["vis/AP"], nan_ok=True)


def test_per_frame_mnc_and_video_mnc_checkpoints_are_interchangeable():
    per_frame = _build(CONFIGS / "mnc_5stage_linked_shapes_video.py")
    video = _build(CONFIGS / "video_mnc_shapes_video.py")
    video.load_state_dict(per_frame.state_dict(), strict=True)
    per_frame.load_state_dict(video.state_dict(), strict=True)
    pairs = zip(per_frame.state_dict().values(), video.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
