"""Video instance segmentation metrics, with stable flat keys (NaN where the ground truth leaves one
undefined)

* ``vis/{AP, AP50, AP75, APs, APm, APl, AR1, AR10}``: YouTube-VIS video AP. A predicted track is matched to a
  ground-truth track by their spatio-temporal mask IoU (intersections summed over the video's frames over
  unions summed over them; a frame where only one of the two has a mask adds that mask to the union), then AP
  as COCO computes it: the computation of the YouTube-VIS API (``YTVISeval``, which mmdet's
  ``YouTubeVISMetric`` calls), run by pycocotools with the track IoU, on tracks formed as ``YouTubeVISMetric``
  forms them: a track's score is the mean of its per-frame scores, its category the majority of its per-frame
  categories (the lowest id on a tie). Area ranges are YouTube-VIS's (small below 128², large above 256²
  pixels of mean mask area). mmdet's metric differs in two details this module does not copy: it rounds to 3
  decimals and takes ground-truth areas from boxes rather than masks.
* ``vis/frame/{AP, AP50, AP75, ...}``: COCO mask AP of the same predictions frame by frame (track ids
  ignored), the number the image models are known by (pycocotools, every frame an image).
* ``vis/mots/{MOTSA, sMOTSA, MOTSP, IDSW}``, ``vis/hota/{HOTA, DetA, AssA}``, ``vis/idf1``: tracking measures
  of MOTS (Voigtlaender et al., CVPR 2019: CLEAR MOT on masks), HOTA (Luiten et al., IJCV 2021) and IDF1
  (Ristani et al., 2016), computed by TrackEval's metric classes (the code of the MOTS and HOTA benchmarks) on
  mask IoU. They score hard decisions: the instances with a per-frame score >= ``score_thr`` (0.5), made
  non-overlapping as MOTS requires, as TrackEval's baselines do (higher scores painted over lower ones).
  Matching is class-aware (an instance only matches ground truth of its category) and pooled over classes.
* ``vis/stability/iou_change``: the mask-stability measure of this project. For each ground-truth track ``g``,
  its partner is the predicted track (score-thresholded as above, before the non-overlap step) with the
  highest spatio-temporal IoU with ``g``, if that is >= 0.5; ``IoU_t(g)`` is the mask IoU of the partner with
  ``g`` in frame ``t``, 0 where ``g`` has a mask and the partner none (a mask that blinks out is the largest
  change). Over all pairs of consecutive frames in which ``g`` has a mask::

      iou_change = mean |IoU_t(g) - IoU_{t-1}(g)|        (lower is steadier; 0 for a perfectly steady fit)

  ``vis/stability/pairs`` is the number of frame pairs it averages.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mnc_bench.evaluation.coco import coco_metrics
from mnc_bench.evaluation.video_io import (
    VideoGroundTruth,
    VideoPredictions,
    load_video_ground_truth,
    load_video_predictions,
)

DEFAULT_SCORE_THR = 0.5
PARTNER_MIN_IOU = 0.5
VIDEO_AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")
# YTVISeval.stats positions of VIDEO_AP_KEYS (COCO's summary order).
_STAT_INDEX = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR1": 6, "AR10": 7}
FRAME_AP_KEYS = ("AP", "AP50", "AP75")


@dataclass(frozen=True)
class PredictedTrack:
    """A predicted track as the video metric sees it: per-frame masks and its voted category and mean
    score."""

    track_id: int
    video_id: int
    category_id: int
    score: float
    rles: tuple[dict[str, Any] | None, ...]  # per frame of the video
    frame_scores: tuple[float | None, ...]
    frame_categories: tuple[int | None, ...]


def predicted_tracks(gt: VideoGroundTruth, pred: VideoPredictions) -> list[PredictedTrack]:
    """Group per-frame predictions into tracks (score: mean over its frames; category: majority vote)."""
    rles = pred.frames.rles or []
    members: dict[int, list[int]] = defaultdict(list)
    for k, track_id in enumerate(pred.track_ids.tolist()):
        members[track_id].append(k)
    tracks = []
    for track_id, indices in sorted(members.items()):
        video_id = gt.image_frames[int(pred.frames.image_ids[indices[0]])][0]
        length = len(gt.frames[video_id])
        masks: list[dict | None] = [None] * length
        scores: list[float | None] = [None] * length
        categories: list[int | None] = [None] * length
        for k in indices:
            frame = gt.image_frames[int(pred.frames.image_ids[k])][1]
            masks[frame], scores[frame] = rles[k], float(pred.frames.scores[k])
            categories[frame] = int(pred.frames.category_ids[k])
        votes = Counter(c for c in categories if c is not None)
        category = min(c for c, n in votes.items() if n == max(votes.values()))
        tracks.append(
            PredictedTrack(
                track_id=track_id,
                video_id=video_id,
                category_id=category,
                score=float(np.mean([s for s in scores if s is not None])),
                rles=tuple(masks),
                frame_scores=tuple(scores),
                frame_categories=tuple(categories),
            )
        )
    return tracks


# ------------------------------------------------------------------------------------------------------------
# Video AP (YouTube-VIS)
# ------------------------------------------------------------------------------------------------------------


class _TrackCOCOeval(COCOeval):
    """pycocotools' COCOeval with videos for images and tracks for instances: only the IoU changes, to
    YouTube-VIS's spatio-temporal mask IoU (as YTVISeval's ``computeIoU``, crowd tracks included)."""

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802 - pycocotools' name
        p = self.params
        gt = self._gts[imgId, catId] if p.useCats else [g for c in p.catIds for g in self._gts[imgId, c]]
        dt = self._dts[imgId, catId] if p.useCats else [d for c in p.catIds for d in self._dts[imgId, c]]
        if not gt and not dt:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in order][: p.maxDets[-1]]
        ious = np.zeros((len(dt), len(gt)))
        for i, j in np.ndindex(ious.shape):
            ious[i, j] = spatio_temporal_iou(dt[i]["segmentations"], gt[j]["segmentations"])
        return ious


def _average_area(rles: Sequence[dict | None]) -> float:
    """YouTube-VIS's track area: the mean mask area over the frames with a non-empty mask (0 if none)."""
    areas = [float(mask_utils.area(r)) for r in rles if r is not None]
    areas = [a for a in areas if a]
    return float(np.mean(areas)) if areas else 0.0


def video_ap(gt: VideoGroundTruth, tracks: Sequence[PredictedTrack]) -> dict[str, float]:
    """YouTube-VIS video AP/AR of ``tracks`` (keys of :data:`VIDEO_AP_KEYS`, unprefixed): YTVISeval's
    computation (mmdet's copy of the YouTube-VIS API cannot run under numpy 2, it calls ``np.float``), run as
    pycocotools' COCOeval with the track IoU of :class:`_TrackCOCOeval`; a test checks it against mmdet's
    ``YouTubeVISMetric``."""
    categories = [{"id": cid, "name": name} for cid, name in gt.frames_gt.category_names.items()]
    videos = [{"id": video_id} for video_id in gt.frames]
    truth = [
        {
            "id": t.track_id,
            "image_id": t.video_id,
            "category_id": t.category_id,
            "iscrowd": int(t.iscrowd),
            "area": _average_area(t.rles),
            "segmentations": list(t.rles),
        }
        for t in gt.tracks
    ]
    found = [
        {
            "id": k + 1,
            "image_id": t.video_id,
            "category_id": t.category_id,
            "score": t.score,
            "iscrowd": 0,
            "area": _average_area(t.rles),
            "segmentations": list(t.rles),
        }
        for k, t in enumerate(tracks)
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": videos, "annotations": truth, "categories": categories}
        coco_dt.dataset = {"images": videos, "annotations": found, "categories": categories}
        coco_gt.createIndex()
        coco_dt.createIndex()
        # "bbox" only so that COCOeval converts no 'segmentation' of its own; computeIoU reads the tracks'
        # masks.
        evaluation = _TrackCOCOeval(coco_gt, coco_dt, "bbox")
        evaluation.params.imgIds = list(gt.frames)
        evaluation.params.areaRng = [
            [0, 1e5**2],
            [0, 128**2],
            [128**2, 256**2],
            [256**2, 1e5**2],
        ]  # YouTube-VIS's
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {key: _undefined_as_nan(evaluation.stats[index]) for key, index in _STAT_INDEX.items()}


def _undefined_as_nan(value: float) -> float:
    return math.nan if value < 0 else float(value)


# ------------------------------------------------------------------------------------------------------------
# Tracking measures (TrackEval) and mask stability
# ------------------------------------------------------------------------------------------------------------


def _mask_iou(a: Sequence[dict], b: Sequence[dict]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(list(a), list(b), [0] * len(b)), dtype=np.float64).reshape(
        len(a), len(b)
    )


def _non_overlapping(rles: list[dict], scores: list[float]) -> list[dict]:
    """Masks of one frame made disjoint: each pixel goes to the highest-scoring mask covering it (TrackEval's
    ``baselines.baseline_utils.non_overlap``, which MOTS's evaluation expects of its input)."""
    if len(rles) < 2:
        return rles
    order = np.argsort(-np.asarray(scores), kind="stable")
    owner = np.zeros(tuple(rles[0]["size"]), dtype=np.int64)
    for rank, k in enumerate(order[::-1]):  # lowest score first, so higher scores overwrite
        owner[mask_utils.decode(rles[k]).astype(bool)] = len(order) - rank
    disjoint = [None] * len(rles)
    for rank, k in enumerate(order):
        disjoint[k] = mask_utils.encode(np.asfortranarray((owner == rank + 1).astype(np.uint8)))
    return disjoint


@dataclass(frozen=True)
class _Frame:
    gt_tracks: list[int]
    gt_rles: list[dict]
    gt_categories: list[int]
    pred_tracks: list[int]
    pred_rles: list[dict]
    pred_categories: list[int]
    pred_scores: list[float]


def _confident_frames(
    gt: VideoGroundTruth, tracks: Sequence[PredictedTrack], score_thr: float
) -> dict[int, list[_Frame]]:
    """Per video and frame: the non-crowd ground truth and the predictions scoring >= ``score_thr``."""
    frames = {
        video: [_Frame([], [], [], [], [], [], []) for _ in images] for video, images in gt.frames.items()
    }
    for track in gt.tracks:
        if track.iscrowd:
            continue
        for t, rle in enumerate(track.rles):
            if rle is not None:
                frame = frames[track.video_id][t]
                frame.gt_tracks.append(track.track_id)
                frame.gt_rles.append(rle)
                frame.gt_categories.append(track.category_id)
    for track in tracks:
        for t, (rle, score, category) in enumerate(
            zip(track.rles, track.frame_scores, track.frame_categories)
        ):
            if rle is not None and score >= score_thr:
                frame = frames[track.video_id][t]
                frame.pred_tracks.append(track.track_id)
                frame.pred_rles.append(rle)
                frame.pred_categories.append(category)
                frame.pred_scores.append(score)
    return frames


def _trackeval_sequence(frames: list[_Frame]) -> dict[str, Any]:
    """One video as TrackEval's metrics take it: 0-based ids per sequence and a mask-IoU matrix per frame,
    zero between different categories (class-aware matching)."""
    gt_index = {g: k for k, g in enumerate(sorted({g for f in frames for g in f.gt_tracks}))}
    pred_index = {p: k for k, p in enumerate(sorted({p for f in frames for p in f.pred_tracks}))}
    data: dict[str, Any] = dict(
        gt_ids=[],
        tracker_ids=[],
        similarity_scores=[],
        num_timesteps=len(frames),
        num_gt_ids=len(gt_index),
        num_tracker_ids=len(pred_index),
        num_gt_dets=sum(len(f.gt_tracks) for f in frames),
        num_tracker_dets=sum(len(f.pred_tracks) for f in frames),
    )
    for f in frames:
        similarity = _mask_iou(f.gt_rles, _non_overlapping(f.pred_rles, f.pred_scores))
        same_class = np.asarray(f.gt_categories)[:, None] == np.asarray(f.pred_categories)[None, :]
        data["gt_ids"].append(np.asarray([gt_index[g] for g in f.gt_tracks], dtype=int))
        data["tracker_ids"].append(np.asarray([pred_index[p] for p in f.pred_tracks], dtype=int))
        data["similarity_scores"].append(similarity * same_class.reshape(similarity.shape))
    return data


def tracking_metrics(
    gt: VideoGroundTruth, tracks: Sequence[PredictedTrack], score_thr: float = DEFAULT_SCORE_THR
) -> dict[str, float]:
    """MOTS (CLEAR on masks), HOTA and IDF1 over every video (keys ``mots/...``, ``hota/...``, ``idf1``)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    metrics = {
        "clear": CLEAR({"PRINT_CONFIG": False}),
        "hota": HOTA(),
        "identity": Identity({"PRINT_CONFIG": False}),
    }
    sequences = [_trackeval_sequence(frames) for frames in _confident_frames(gt, tracks, score_thr).values()]
    with contextlib.redirect_stdout(io.StringIO()):
        combined = {
            name: metric.combine_sequences(
                {str(k): metric.eval_sequence(data) for k, data in enumerate(sequences)}
            )
            for name, metric in metrics.items()
        }
    clear, hota = combined["clear"], combined["hota"]
    return {
        "mots/MOTSA": float(clear["MOTA"]),
        "mots/sMOTSA": float(clear["sMOTA"]),
        "mots/MOTSP": float(clear["MOTP"]),
        "mots/IDSW": float(clear["IDSW"]),
        "hota/HOTA": float(np.mean(hota["HOTA"])),
        "hota/DetA": float(np.mean(hota["DetA"])),
        "hota/AssA": float(np.mean(hota["AssA"])),
        "idf1": float(combined["identity"]["IDF1"]),
    }


@dataclass(frozen=True)
class TrackFit:
    """A ground-truth track and its partner: the mask IoU per frame where the ground truth has a mask (0 where
    the partner has none there), NaN in the other frames and throughout for a track without a partner."""

    video_id: int
    gt_track: int
    pred_track: int | None
    category_id: int
    ious: tuple[float, ...]


def track_fits(
    gt: VideoGroundTruth, tracks: Sequence[PredictedTrack], score_thr: float = DEFAULT_SCORE_THR
) -> list[TrackFit]:
    """Each non-crowd ground-truth track with its partner (module docstring) and their per-frame IoU."""
    confident = [_confident_track(t, score_thr) for t in tracks]
    by_video: dict[int, list[PredictedTrack]] = defaultdict(list)
    for track in confident:
        if track is not None:
            by_video[track.video_id].append(track)
    fits = []
    for g in gt.tracks:
        if g.iscrowd:
            continue
        best, best_iou = None, PARTNER_MIN_IOU
        for p in by_video[g.video_id]:
            iou = spatio_temporal_iou(g.rles, p.rles)
            if iou >= best_iou:
                best, best_iou = p, iou
        ious = tuple(
            math.nan if best is None or a is None else 0.0 if b is None else float(_mask_iou([a], [b])[0, 0])
            for a, b in zip(g.rles, best.rles if best is not None else g.rles)
        )
        fits.append(
            TrackFit(
                video_id=g.video_id,
                gt_track=g.track_id,
                pred_track=None if best is None else best.track_id,
                category_id=g.category_id,
                ious=ious,
            )
        )
    return fits


def _confident_track(track: PredictedTrack, score_thr: float) -> PredictedTrack | None:
    keep = [r is not None and s >= score_thr for r, s in zip(track.rles, track.frame_scores)]
    if not any(keep):
        return None
    return PredictedTrack(
        track.track_id,
        track.video_id,
        track.category_id,
        track.score,
        tuple(r if k else None for r, k in zip(track.rles, keep)),
        tuple(s if k else None for s, k in zip(track.frame_scores, keep)),
        tuple(c if k else None for c, k in zip(track.frame_categories, keep)),
    )


def spatio_temporal_iou(a: Sequence[dict | None], b: Sequence[dict | None]) -> float:
    """YouTube-VIS's track IoU: intersections summed over frames / unions summed over frames."""
    intersection = union = 0.0
    for x, y in zip(a, b):
        if x is not None and y is not None:
            intersection += float(mask_utils.area(mask_utils.merge([x, y], intersect=True)))
            union += float(mask_utils.area(mask_utils.merge([x, y], intersect=False)))
        elif x is not None or y is not None:
            union += float(mask_utils.area(x if x is not None else y))
    return intersection / union if union > 0 else 0.0


def stability(fits: Sequence[TrackFit]) -> dict[str, float]:
    """``stability/iou_change`` (mean |ΔIoU| over consecutive frame pairs of partnered tracks) and its
    count."""
    changes = [
        abs(b - a)
        for fit in fits
        for a, b in zip(fit.ious, fit.ious[1:])
        if not (math.isnan(a) or math.isnan(b))
    ]
    return {
        "stability/iou_change": float(np.mean(changes)) if changes else math.nan,
        "stability/pairs": float(len(changes)),
    }


# ------------------------------------------------------------------------------------------------------------
# Everything
# ------------------------------------------------------------------------------------------------------------


def evaluate_video(
    gt: str | Mapping[str, Any] | VideoGroundTruth,
    predictions: Any,
    *,
    score_thr: float = DEFAULT_SCORE_THR,
    backend: str = "pycocotools",
) -> dict[str, float]:
    """Every video metric of the module docstring under ``vis/...`` keys: ground truth a COCO-video file
    (path, dict or loaded), predictions tracked result records (path or list)."""
    gt = load_video_ground_truth(gt if not isinstance(gt, Mapping) else dict(gt))
    pred = load_video_predictions(predictions, gt)
    tracks = predicted_tracks(gt, pred)
    results: dict[str, float] = {}
    results.update({f"vis/{k}": v for k, v in video_ap(gt, tracks).items()})
    if len(pred):
        frame_ap = coco_metrics(gt.frames_gt, pred.frames, "segm", backend)
    else:  # COCO's AP without a single detection: 0 where there is ground truth to find
        nothing = 0.0 if any(not t.iscrowd for t in gt.tracks) else math.nan
        frame_ap = dict.fromkeys(FRAME_AP_KEYS, nothing)
    results.update({f"vis/frame/{k}": frame_ap[k] for k in FRAME_AP_KEYS})
    results.update({f"vis/{k}": v for k, v in tracking_metrics(gt, tracks, score_thr).items()})
    results.update({f"vis/{k}": v for k, v in stability(track_fits(gt, tracks, score_thr)).items()})
    return results
