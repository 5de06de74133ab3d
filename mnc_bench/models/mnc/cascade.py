"""MNC's cascade: mask stage and classification stage, repeated on regressed boxes, trained end to end.

Stage 1 (the RPN) lives outside this module and hands over per-image proposals. Stages 2 (masks) and 3
(classification + box regression) form one "round"; a cascade of `num_stages` = 3, 5, 7, ... runs
(num_stages - 1) / 2 rounds, each on the boxes regressed by the previous round's stage 3. With
`box_grad=True` the warping is differentiated w.r.t. its boxes, so later stages' losses reach stage 1's box
deltas and earlier stage-3 regressors; `box_grad=False` detaches every box (the step-wise training ablation).

Re-entering boxes (training and inference alike): each RoI is regressed with the deltas of its highest-scoring
foreground class, as MNC-code's stage bridge does; the class choice carries no gradient, the deltas and the
input box do. In training, round r > 0 keeps all RoIs of round r - 1 (no resampling, as MNC-code) plus the
ground-truth boxes, with labels and targets re-assigned by IoU. As in MNC-code, the classification loss reaches
a RoI's stage-2 mask only when the RoI is foreground.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mnc_bench.models.mnc.boxes import BoxCoder, clip_boxes, clip_gradient, inside_image
from mnc_bench.models.mnc.class_stage import ClassStage, classification_losses
from mnc_bench.models.mnc.mask_stage import MaskStage, mask_loss
from mnc_bench.models.mnc.roi_warp import RoIWarp
from mnc_bench.models.mnc.targets import (
    InstanceTargets,
    RoISampling,
    assign_rois,
    box_targets,
    mask_targets,
    sample_rois,
)


@dataclass(frozen=True)
class StageLossWeights:
    """Loss weights of one round: `mask` for its mask stage, `cls` and `box` for its classification stage.

    The paper weighs every term 1; MNC-code's prototxt weighs the mask loss 2.
    """

    mask: float = 1.0
    cls: float = 1.0
    box: float = 1.0

    def __post_init__(self) -> None:
        for name in ("mask", "cls", "box"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss_weights.{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class CascadeOutput:
    """Every instance the cascade produced for one image (all rounds concatenated), before NMS.

    Instance i's mask lives in `mask_boxes[i]`; `class_boxes[i, c]` is its box regressed for class c + 1.
    """

    mask_boxes: Tensor  # [N, 4]
    mask_logits: Tensor  # [N, m, m]
    class_probs: Tensor  # [N, num_classes + 1], column 0 background
    class_boxes: Tensor  # [N, num_classes, 4]


@dataclass
class _RoundOutput:
    mask_logits: Tensor  # [R, m, m]
    class_logits: Tensor  # [R, N + 1]
    box_deltas: Tensor  # [R, N, 4]


def _num_rounds(num_stages: int) -> int:
    if num_stages < 3 or num_stages % 2 == 0:
        raise ValueError(f"num_stages: must be odd and >= 3 (3, 5, 7, ...), got {num_stages}")
    return (num_stages - 1) // 2


class MNCCascade(nn.Module):
    """Stages 2..num_stages of MNC on top of a feature extractor and a proposal generator."""

    def __init__(
        self,
        *,
        roi_warp: RoIWarp,
        mask_stage: MaskStage,
        class_stage: ClassStage,
        num_stages: int = 3,
        share_weights: bool = True,
        box_grad: bool = True,
        box_grad_clip: float | None = None,
        loss_weights: StageLossWeights | Sequence[StageLossWeights] = StageLossWeights(),
        sampling: RoISampling = RoISampling(),
        box_coder: BoxCoder | None = None,
    ):
        """`share_weights=False` gives every round its own copy of the stage modules (starting from the same
        initial weights); `box_grad_clip` bounds element-wise, per image, the gradient that later rounds send
        into a round's box deltas (MNC-code: 1/512; None: unbounded; see `box_grad_bound`); `loss_weights` is
        one StageLossWeights for all rounds or one per round."""
        super().__init__()
        self.num_rounds = _num_rounds(num_stages)
        if isinstance(loss_weights, StageLossWeights):
            loss_weights = [loss_weights] * self.num_rounds
        if len(loss_weights) != self.num_rounds:
            raise ValueError(
                f"loss_weights: need 1 or {self.num_rounds} entries (one per mask/class round), "
                f"got {len(loss_weights)}"
            )
        self.num_stages = num_stages
        self.share_weights = share_weights
        if box_grad_clip is not None and box_grad_clip <= 0:
            raise ValueError(f"box_grad_clip: must be positive or None, got {box_grad_clip}")
        self.box_grad = box_grad
        self.box_grad_clip = box_grad_clip
        self.loss_weights = tuple(loss_weights)
        self.sampling = sampling
        self.box_coder = box_coder if box_coder is not None else BoxCoder()
        self.roi_warp = roi_warp
        num_copies = 1 if share_weights else self.num_rounds
        self.mask_stages = nn.ModuleList(
            [mask_stage] + [copy.deepcopy(mask_stage) for _ in range(num_copies - 1)]
        )
        self.class_stages = nn.ModuleList(
            [class_stage] + [copy.deepcopy(class_stage) for _ in range(num_copies - 1)]
        )

    def box_grad_bound(self, num_images: int) -> float | None:
        """The element-wise bound on the box gradient of a batch of `num_images` images.

        MNC-code trains on one image per batch and clips that image's gradient at `box_grad_clip`. The losses
        here are means over the batch, which scales each image's gradient by 1 / num_images, so the same
        per-image bound is `box_grad_clip / num_images`; otherwise the box gradient outweighs the RPN's own
        regression loss num_images times more than in MNC-code.
        """
        if self.box_grad_clip is None:
            return None
        return self.box_grad_clip / max(num_images, 1)

    def _run_round(
        self,
        round_index: int,
        features: Sequence[Tensor],
        boxes: Sequence[Tensor],
        foreground: Tensor | None = None,
    ) -> _RoundOutput:
        """`foreground` [R] bool (training): only these RoIs pass the classification gradient to their masks."""
        stage_index = 0 if self.share_weights else round_index
        roi_features = self.roi_warp(features, boxes)
        mask_logits = self.mask_stages[stage_index](roi_features)
        guiding_masks = mask_logits
        if foreground is not None:
            # As MNC-code's mask layer: a background RoI has no object mask for classification to refine.
            guiding_masks = torch.where(foreground[:, None, None], mask_logits, mask_logits.detach())
        class_logits, box_deltas = self.class_stages[stage_index](roi_features, guiding_masks)
        return _RoundOutput(mask_logits=mask_logits, class_logits=class_logits, box_deltas=box_deltas)

    def _regress(
        self,
        boxes: Sequence[Tensor],
        output: _RoundOutput,
        image_sizes: Sequence[tuple[int, int]],
        grad_bound: float | None = None,
    ) -> list[Tensor]:
        """Each box moved by the deltas of its highest-scoring foreground class, clipped to its image.

        `grad_bound` clamps the gradient reaching those deltas; as in MNC-code's stage bridge, a box that had
        to be clipped sends no gradient into its deltas.
        """
        all_boxes = torch.cat(list(boxes), dim=0)
        best_class = output.class_logits.detach()[:, 1:].argmax(dim=1)
        deltas = output.box_deltas[torch.arange(all_boxes.shape[0], device=all_boxes.device), best_class]
        counts = [b.shape[0] for b in boxes]
        if self.box_grad and deltas.requires_grad:
            with torch.no_grad():
                unclipped = self.box_coder.decode(all_boxes, deltas).split(counts)
                inside = torch.cat([inside_image(b, size) for b, size in zip(unclipped, image_sizes)])
            deltas = torch.where(inside[:, None], clip_gradient(deltas, grad_bound), deltas.detach())
        regressed = self.box_coder.decode(all_boxes, deltas)
        if not self.box_grad:
            regressed = regressed.detach()
        per_image = regressed.split(counts)
        return [clip_boxes(b, size) for b, size in zip(per_image, image_sizes)]

    def loss(
        self,
        features: Sequence[Tensor],
        proposals: Sequence[Tensor],
        targets: Sequence[InstanceTargets],
        image_sizes: Sequence[tuple[int, int]],
    ) -> dict[str, Tensor]:
        """Weighted losses of every stage 2..num_stages.

        Args:
            features: per level [B, C, H_l, W_l].
            proposals: B tensors [P_b, 4] (input pixels), differentiable w.r.t. stage 1 when box_grad is True.
            targets: B ground truths (labels 1..N).
            image_sizes: B (height, width) of the unpadded network inputs.

        Returns:
            {"loss_mask_s2", "loss_cls_s3", "loss_box_s3", "loss_mask_s4", ...}, already weighted.
        """
        if not (len(proposals) == len(targets) == len(image_sizes)):
            raise ValueError("proposals, targets and image_sizes must have one entry per image")
        if not self.box_grad:
            proposals = [p.detach() for p in proposals]
        candidates = [torch.cat((p, t.boxes.to(p.dtype))) for p, t in zip(proposals, targets)]
        boxes = [c[sample_rois(c, t.boxes, self.sampling)] for c, t in zip(candidates, targets)]

        losses: dict[str, Tensor] = {}
        for round_index in range(self.num_rounds):
            if round_index > 0:
                boxes = [torch.cat((b, t.boxes.to(b.dtype))) for b, t in zip(boxes, targets)]
            assignments = [assign_rois(b, t, fg_iou=self.sampling.fg_iou) for b, t in zip(boxes, targets)]
            labels = torch.cat([a.labels for a in assignments])
            output = self._run_round(round_index, features, boxes, foreground=labels > 0)

            regression_targets = torch.cat(
                [box_targets(b, a, t, self.box_coder) for b, a, t in zip(boxes, assignments, targets)]
            )
            mask_size = output.mask_logits.shape[-1]
            positive_masks = torch.cat(
                [mask_targets(b, a, t, mask_size) for b, a, t in zip(boxes, assignments, targets)]
            )
            loss_cls, loss_box = classification_losses(
                output.class_logits, output.box_deltas, labels, regression_targets
            )
            weights = self.loss_weights[round_index]
            mask_stage_number, class_stage_number = 2 * round_index + 2, 2 * round_index + 3
            losses[f"loss_mask_s{mask_stage_number}"] = weights.mask * mask_loss(
                output.mask_logits[labels > 0], positive_masks
            )
            losses[f"loss_cls_s{class_stage_number}"] = weights.cls * loss_cls
            losses[f"loss_box_s{class_stage_number}"] = weights.box * loss_box

            if round_index + 1 < self.num_rounds:
                boxes = self._regress(boxes, output, image_sizes, self.box_grad_bound(len(proposals)))
        return losses

    def predict(
        self,
        features: Sequence[Tensor],
        proposals: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[CascadeOutput]:
        """Instances of all rounds for each image: round 1 on the proposals, round r on round r-1's boxes
        (MNC's 5-stage inference pools stage 2/3 outputs on the 300 proposals with stage 4/5 outputs on
        their regressed boxes: 600 instances)."""
        boxes = [p.detach() for p in proposals]
        per_round: list[list[CascadeOutput]] = []
        for round_index in range(self.num_rounds):
            output = self._run_round(round_index, features, boxes)
            all_boxes = torch.cat(boxes, dim=0)
            class_boxes = self.box_coder.decode(all_boxes, output.box_deltas)
            counts = [b.shape[0] for b in boxes]
            per_round.append(
                [
                    CascadeOutput(
                        mask_boxes=image_boxes,
                        mask_logits=mask_logits,
                        class_probs=class_logits.softmax(dim=1),
                        class_boxes=clip_boxes(image_class_boxes, size),
                    )
                    for image_boxes, mask_logits, class_logits, image_class_boxes, size in zip(
                        boxes,
                        output.mask_logits.split(counts),
                        output.class_logits.split(counts),
                        class_boxes.split(counts),
                        image_sizes,
                    )
                ]
            )
            if round_index + 1 < self.num_rounds:
                boxes = self._regress(boxes, output, image_sizes)
        return [
            CascadeOutput(
                mask_boxes=torch.cat([r[i].mask_boxes for r in per_round]),
                mask_logits=torch.cat([r[i].mask_logits for r in per_round]),
                class_probs=torch.cat([r[i].class_probs for r in per_round]),
                class_boxes=torch.cat([r[i].class_boxes for r in per_round]),
            )
            for i in range(len(proposals))
        ]
