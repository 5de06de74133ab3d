"""``mnc-bench test --soft-masks DIR``: every predicted instance's mask probabilities as an 8-bit PNG pasted
at the image's size (floor(255 p), 0 outside the instance's box), with an index, the matte an editing tool
takes.

Layout of ``DIR`` (written in a temporary sibling and renamed into place when the test ends)::

    images:  <image_id>/<k>.png                     k: the detection's position among the image's
                                                    predictions (the order of the records of `--out`)
    videos:  <video_id>/<track_id>/<frame_id>.png   track_id: the `track_id` of the tracked records of `--out`
    index.json   {"kind": "image" | "video", "masks": [{file, image_id, category_id, score, (detection) |
                                                        (video_id, frame_id, track_id)}, ...]}

The masks the evaluator scores are untouched: the probabilities are an extra output beside them (MNC: its
post-processor also returns the pasted probabilities it binarises; mmdet's FCN mask heads, e.g. Mask R-CNN's
and MaskTrack R-CNN's: the head pastes a second time without its threshold, which mmdet writes as
floor(255 p)).
"""

from __future__ import annotations

import copy
import os
import shutil
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from PIL import Image

from mnc_bench.errors import UserError
from mnc_bench.io import fsync_dir, make_staging_dir, write_json

WRITER_NAME = "MNCBenchSoftMaskWriter"


def enable_soft_masks(model: torch.nn.Module) -> None:
    """Make every mask producer of ``model`` add ``soft_masks`` [N, H, W] uint8 to its instances; a UserError
    if the model has none this supports."""
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead

    from mnc_bench.models.mmdet_adapter import MNC

    found = 0
    for module in model.modules():
        if isinstance(module, MNC):
            module.postprocessor.soft_masks = True
            found += 1
        elif isinstance(module, FCNMaskHead):
            module.predict_by_feat = types.MethodType(_soft_predict_by_feat(module.predict_by_feat), module)
            found += 1
        tracker = getattr(module, "tracker", None)
        if tracker is not None and hasattr(tracker, "track"):
            tracker.track = _carry_soft_masks(tracker.track)
    if not found:
        raise UserError(
            f"--soft-masks: {type(model).__name__} has no mask head that can export probabilities "
            "(supported: MNC's post-processor and mmdet's FCN mask heads, e.g. Mask R-CNN's)"
        )


def _soft_predict_by_feat(original):
    def predict_by_feat(
        head, mask_preds, results_list, batch_img_metas, rcnn_test_cfg, rescale=False, activate_map=False
    ):
        # The head rescales the boxes in place: the second, unthresholded paste starts from copies.
        boxes = [results.bboxes.clone() for results in results_list]
        results_list = original(
            mask_preds, results_list, batch_img_metas, rcnn_test_cfg, rescale, activate_map
        )
        soft_cfg = copy.deepcopy(rcnn_test_cfg)
        soft_cfg.mask_thr_binary = -1  # mmdet's mask heads then paste floor(255 p) as uint8
        for index, results in enumerate(results_list):
            if len(boxes[index]) == 0:
                results.soft_masks = torch.zeros(
                    results.masks.shape, dtype=torch.uint8, device=results.masks.device
                )
                continue
            results.soft_masks = head._predict_by_feat_single(
                mask_preds=mask_preds[index],
                bboxes=boxes[index],
                labels=results.labels,
                img_meta=batch_img_metas[index],
                rcnn_test_cfg=soft_cfg,
                rescale=rescale,
                activate_map=activate_map,
            )
        return results_list

    return predict_by_feat


def _carry_soft_masks(track):
    """mmdet's trackers (MaskTrack R-CNN's) build their track instances from chosen fields of the detections,
    in detection order: give them the soft masks of the detections they kept, found by box, score and
    label."""

    def carrying(*args, data_sample, **kwargs):
        tracked = track(*args, data_sample=data_sample, **kwargs)
        detected = data_sample.pred_instances
        if "soft_masks" in detected and "soft_masks" not in tracked:
            keys = torch.cat(
                (detected.bboxes, detected.scores[:, None], detected.labels[:, None].float()), dim=1
            )
            wanted = torch.cat(
                (tracked.bboxes, tracked.scores[:, None], tracked.labels[:, None].float()), dim=1
            )
            chosen, start = [], 0
            for row in wanted:
                start += int(torch.nonzero((keys[start:] == row).all(dim=1))[0])
                chosen.append(start)
                start += 1
            tracked.soft_masks = detected.soft_masks[chosen]
        return tracked

    return carrying


def require_empty_output(out: str | os.PathLike[str]) -> None:
    """A UserError when ``out`` is a file or a non-empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            f"--soft-masks {out}: exists and is not an empty folder (choose another or remove it)"
        )


@dataclass(frozen=True)
class SoftMaskTarget:
    """Where the writer puts the PNGs (``staging``) and where that folder goes when the test ends
    (``out``)."""

    staging: Path
    out: Path


def prepare_output(out: str | os.PathLike[str]) -> SoftMaskTarget:
    """A new staging folder for ``out`` (which must not be a file or a non-empty folder)."""
    require_empty_output(out)
    return SoftMaskTarget(staging=make_staging_dir(out), out=Path(out))


class SoftMaskWriter(BaseMetric):
    """An evaluator entry that scores nothing: it writes each instance's ``soft_masks`` as PNGs into
    ``staging`` and, at the end, the index, then renames ``staging`` to ``out``. Image samples carry
    ``pred_instances``; video samples ``pred_track_instances`` per frame (their track ids renumbered as the
    video metric numbers them, so the index agrees with the tracked records)."""

    default_prefix = ""

    def __init__(
        self,
        staging: str,
        out: str,
        ann_file: str | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.staging, self.out, self.ann_file = Path(staging), Path(out), ann_file

    def process(self, data_batch: Any, data_samples: list) -> None:
        # One result per dataset item (an image or a whole clip): mmengine keeps as many results as the
        # dataset has items when it gathers them.
        for sample in data_samples:
            frames = sample.get("video_data_samples") if isinstance(sample, dict) else None
            if frames is None:
                self.results.append([self._write(_as_dict(sample), "pred_instances", video=False)])
            else:
                self.results.append(
                    [self._write(_as_dict(frame), "pred_track_instances", video=True) for frame in frames]
                )

    def _write(self, sample: dict, field: str, *, video: bool) -> dict[str, Any]:
        pred = _as_dict(sample[field])
        if "soft_masks" not in pred:
            raise UserError(f"--soft-masks: the model's {field} have no soft_masks")
        masks = _numpy(pred["soft_masks"]).astype(np.uint8)
        image_id = int(sample["img_id"])
        folder = self.staging / "pending" / str(image_id)
        folder.mkdir(parents=True, exist_ok=True)
        for k, mask in enumerate(masks):
            Image.fromarray(mask).save(folder / f"{k}.png")
        entry = {
            "image_id": image_id,
            "labels": _numpy(pred["labels"]).astype(np.int64).reshape(-1),
            "scores": _numpy(pred["scores"]).astype(np.float64).reshape(-1),
        }
        if video:
            entry.update(
                video_id=int(sample["video_id"]),
                frame_id=int(sample["frame_id"]),
                track_ids=_numpy(pred["instances_id"]).astype(np.int64).reshape(-1),
            )
        return entry

    def compute_metrics(self, results: list[list[dict[str, Any]]]) -> dict[str, float]:
        from mnc_bench.evaluation.ground_truth import load_ground_truth
        from mnc_bench.evaluation.metric import label_to_category
        from mnc_bench.evaluation.video_metric import file_track_ids

        results = [entry for item in results for entry in item]
        classes = (self.dataset_meta or {}).get("classes")
        categories = label_to_category(load_ground_truth(self.ann_file), classes) if self.ann_file else None
        video = bool(results) and "track_ids" in results[0]
        tracks = file_track_ids(results) if video else {}
        index = []
        for entry in sorted(results, key=lambda e: e["image_id"]):
            image_id = entry["image_id"]
            for k, (label, score) in enumerate(zip(entry["labels"].tolist(), entry["scores"].tolist())):
                record: dict[str, Any] = {
                    "image_id": image_id,
                    "score": score,
                    "category_id": categories[label] if categories else label + 1,
                }
                if video:
                    track = tracks[image_id][k]
                    name = f"{entry['video_id']}/{track}/{entry['frame_id']}.png"
                    record.update(video_id=entry["video_id"], frame_id=entry["frame_id"], track_id=track)
                else:
                    name = f"{image_id}/{k}.png"
                    record["detection"] = k
                target = self.staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.staging / "pending" / str(image_id) / f"{k}.png", target)
                index.append({"file": name, **record})
        shutil.rmtree(self.staging / "pending", ignore_errors=True)
        write_json(
            self.staging / "index.json", {"kind": "video" if video else "image", "masks": index}, indent=1
        )
        if self.out.exists():
            self.out.rmdir()  # empty: checked when the run started
        os.replace(self.staging, self.out)
        fsync_dir(self.out.parent)
        return {}


def _as_dict(item: Any) -> dict:
    return item.to_dict() if hasattr(item, "to_dict") else item


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
