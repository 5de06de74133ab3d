"""Video MNC: the cascade seeded by time. The previous frame's final instances enter stage 2 as extra
proposals and are refined by the current frame's cascade like any proposal; association follows from that
seeding.

Per frame of a clip:

1. **Seeding.** The boxes of the tracks seen in the last ``max_age`` frames (their last final boxes, in this
   frame's network-input pixels) become proposals. ``mode="join"`` (the default) appends them to the RPN's
   proposals, so objects that enter are still found; ``mode="replace"`` gives stage 2 only them from the
   second frame on (a tracker by refinement: cheaper, but blind to objects that appear later; a frame with
   nothing to propagate falls back to the RPN). In both modes at most ``max_propagated`` boxes enter, the most
   recently seen (then best scoring) first.
2. **Refinement.** Stages 2..N run unchanged on all proposals (:meth:`MNCCascade.predict`): every output
   instance descends from one proposal (instance ``i`` of round ``r`` from proposal ``i mod R``), so each
   knows the track it was seeded by, if any.
3. **Association.** Post-processing (class-wise NMS, mask voting) keeps a detection per group of overlapping
   instances. A detection continues the track of the seeded instance it keeps or, failing that, of the best
   scoring seeded instance of its class that it suppressed in NMS (box IoU above the NMS threshold and a lower
   score: greedy NMS's suppressor). A track continues in one detection only, its best scoring; every other
   detection starts a new track.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from mnc_bench.models.mnc.cascade import CascadeOutput
from mnc_bench.models.mnc.config import ParameterError
from mnc_bench.models.mnc.postprocess import Detections

SeedingMode = Literal["join", "replace"]
NO_TRACK = -1


@dataclass
class Seeds:
    """Proposals for stage 2 and the track each one was seeded by (``NO_TRACK`` for the RPN's)."""

    proposals: Tensor  # [R, 4] network-input pixels
    tracks: Tensor  # [R] int64


@dataclass
class _LiveTrack:
    box: Tensor  # [4] its last final box, output-image pixels
    score: float
    last_seen: int


@dataclass
class TemporalSeeding:
    """The state of one clip's seeding: :meth:`reset` at the first frame, then per frame :meth:`seed`, run the
    cascade and post-processing, :meth:`associate`."""

    mode: SeedingMode = "join"
    max_age: int = 2
    max_propagated: int = 100
    _tracks: dict[int, _LiveTrack] = field(default_factory=dict)
    _next_id: int = 0
    _frame: int = -1

    def __post_init__(self) -> None:
        if self.mode not in ("join", "replace"):
            raise ParameterError("seeding.mode", f"must be 'join' or 'replace', got {self.mode!r}")
        if self.max_age < 1:
            raise ParameterError("seeding.max_age", f"must be >= 1, got {self.max_age}")
        if self.max_propagated < 1:
            raise ParameterError("seeding.max_propagated", f"must be >= 1, got {self.max_propagated}")

    def reset(self) -> None:
        self._tracks, self._next_id, self._frame = {}, 0, -1

    def seed(self, rpn_proposals: Tensor, scale: tuple[float, float]) -> Seeds:
        """This frame's stage-2 input: the RPN's proposals [P, 4] joined or replaced by the live tracks'
        boxes. ``scale``: (x, y) factors from output to network-input pixels (mmdet's ``scale_factor``)."""
        self._frame += 1
        self._tracks = {k: t for k, t in self._tracks.items() if self._frame - t.last_seen <= self.max_age}
        ranked = sorted(self._tracks.items(), key=lambda kv: (-kv[1].last_seen, -kv[1].score))
        ranked = ranked[: self.max_propagated]
        if not ranked:
            return Seeds(rpn_proposals, self._untracked(rpn_proposals))
        factor = rpn_proposals.new_tensor([scale[0], scale[1], scale[0], scale[1]])
        boxes = torch.stack([t.box.to(rpn_proposals) for _, t in ranked]) * factor
        tracks = torch.tensor([k for k, _ in ranked], dtype=torch.int64, device=rpn_proposals.device)
        if self.mode == "replace":
            return Seeds(boxes, tracks)
        return Seeds(
            torch.cat((rpn_proposals, boxes)),
            torch.cat((self._untracked(rpn_proposals), tracks)),
        )

    @staticmethod
    def _untracked(proposals: Tensor) -> Tensor:
        """``NO_TRACK`` [P] (int64, on the proposals' device) for proposals that continue no track."""
        return torch.full((len(proposals),), NO_TRACK, dtype=torch.int64, device=proposals.device)

    def associate(
        self,
        seeds: Seeds,
        instances: CascadeOutput,
        detections: Detections,
        *,
        score_thr: float,
        nms_iou: float,
    ) -> Tensor:
        """Track ids [D] (int64, from 0 per clip) of the frame's detections; remembers their boxes."""
        num_proposals = len(seeds.proposals)
        if instances.mask_boxes.shape[0] % max(num_proposals, 1):
            raise ValueError("every cascade round must output one instance per proposal")
        origin = seeds.tracks.to(detections.labels.device)
        seeded = origin.repeat(instances.mask_boxes.shape[0] // max(num_proposals, 1))  # per instance
        inherited = seeded[detections.instance_ids].clone()
        missing = torch.nonzero(inherited == NO_TRACK).flatten()
        if len(missing):
            inherited[missing] = self._suppressed_track(
                seeded, instances, detections, missing, score_thr, nms_iou
            )
        ids = torch.full_like(inherited, NO_TRACK)
        for d in torch.argsort(detections.scores, descending=True, stable=True).tolist():
            track = int(inherited[d])
            if track != NO_TRACK and track not in ids.tolist():
                ids[d] = track
        for d in torch.nonzero(ids == NO_TRACK).flatten().tolist():
            ids[d] = self._next_id
            self._next_id += 1
        for d, track in enumerate(ids.tolist()):
            self._tracks[track] = _LiveTrack(
                detections.boxes[d].detach().cpu(), float(detections.scores[d]), self._frame
            )
        return ids

    @staticmethod
    def _suppressed_track(
        seeded: Tensor,
        instances: CascadeOutput,
        detections: Detections,
        which: Tensor,
        score_thr: float,
        nms_iou: float,
    ) -> Tensor:
        """For detections ``which``: the track of the best scoring seeded (instance, class) pair that the
        detection suppressed in class-wise NMS, ``NO_TRACK`` if none. Greedy NMS suppresses a pair by the best
        scoring kept detection of its class that scores at least as high and overlaps it by more than
        ``nms_iou``."""
        from torchvision.ops import box_iou  # on first use, as the post-processor's NMS

        found = torch.full((len(which),), NO_TRACK, dtype=torch.int64, device=seeded.device)
        pair_instances, pair_classes = (instances.class_probs[:, 1:] > score_thr).nonzero(as_tuple=True)
        keep = seeded[pair_instances] != NO_TRACK
        pair_instances, pair_classes = pair_instances[keep], pair_classes[keep]
        if not len(pair_instances) or not len(detections.scores):
            return found
        pair_scores = instances.class_probs[pair_instances, pair_classes + 1]
        overlaps = box_iou(
            instances.mask_boxes[detections.instance_ids], instances.mask_boxes[pair_instances]
        )
        can_suppress = (
            (detections.labels[:, None] == pair_classes[None, :])
            & (overlaps > nms_iou)
            & (detections.scores[:, None] >= pair_scores[None, :])
        )  # [D, pairs]
        ranked = torch.where(can_suppress, detections.scores[:, None], torch.full_like(overlaps, -1.0))
        suppressor = ranked.argmax(dim=0)
        suppressed = can_suppress.any(dim=0)
        for k, d in enumerate(which.tolist()):
            mine = suppressed & (suppressor == d)
            if mine.any():
                best = torch.where(mine, pair_scores, torch.full_like(pair_scores, -1.0)).argmax()
                found[k] = seeded[pair_instances[best]]
        return found
