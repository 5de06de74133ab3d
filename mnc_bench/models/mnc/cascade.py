"""MNC's cascade: mask stage and classification stage, repeated on regressed boxes, trained end to end.

Stage 1 (the RPN) lives outside this module and hands over per-image proposals. Stages 2 (masks) and 3
(classification + box regression) form one "round"; a cascade of `num_stages` = 3, 5, 7, ... runs
(num_stages - 1) / 2 rounds, each on the boxes regressed by the previous round's stage 3. With
`box_grad=True` the warping is differentiated w.r.t. its boxes, so later stages' losses reach stage 1's box
deltas and earlier stage-3 regressors; `box_grad=False` detaches every box (the step-wise training ablation).

Re-entering boxes (training and inference alike): each RoI is regressed with the deltas of its highest-scoring
foreground class under the scoring classifier (the mask-level one when stage 3 has it), as MNC-code's stage
bridge does; the class choice carries no gradient, the deltas and the input box do. In training, round
r > 0 keeps all RoIs of round r - 1 (no resampling, as MNC-code) plus the ground-truth boxes, with labels and
targets re-assigned by IoU.

Stage 3's classifiers (`ClassStage.labels`): "box" trains one classifier on box-IoU labels; "mask" one on
mask-IoU labels (the stage-2 mask of a box-level foreground RoI, binarised, against its ground truth:
MNC-code's MaskLayer); "both" trains the two side by side, MNC-code's cls_score and seg_cls_score. The
classification loss reaches a RoI's stage-2 mask only when the RoI is a positive of the scoring classifier's
labels: box-level foreground with "box", mask-level positive otherwise (MNC-code's MaskLayer passes the
gradient of its mask-level positives only).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mnc_bench.models.mnc.boxes import BoxCoder, clip_boxes, clip_gradient, inside_image
from mnc_bench.models.mnc.class_stage import ClassStage, ClassStageOutput, box_loss, classification_loss
from mnc_bench.models.mnc.config import (
    MNCConfig,
    ParameterError,
    RoISampling,
    StageLossWeights,
    num_rounds,
    round_loss_weights,
)
from mnc_bench.models.mnc.mask_stage import MaskStage, mask_loss
from mnc_bench.models.mnc.roi_warp import RoIWarp
from mnc_bench.models.mnc.targets import (
    InstanceTargets,
    assign_rois,
    box_targets,
    mask_coverage,
    mask_level_labels,
    mask_targets,
    sample_rois,
)


@dataclass
class CascadeOutput:
    """Every instance the cascade produced for one image (all rounds concatenated), before NMS.

    Instance i's mask lives in `mask_boxes[i]`; `class_boxes[i, c]` is its box regressed for class c + 1;
    `class_probs` come from stage 3's scoring classifier (see `ClassStageOutput.scoring_logits`).
    """

    mask_boxes: Tensor  # [N, 4]
    mask_logits: Tensor  # [N, m, m]
    class_probs: Tensor  # [N, num_classes + 1], column 0 background
    class_boxes: Tensor  # [N, num_classes, 4]


@dataclass
class _RoundTargets:
    labels: Tensor  # [R] box-level labels, 0 = background
    seg_labels: Tensor | None  # [R] mask-level labels (0 for every box-level background RoI)
    positive_masks: Tensor  # [P, m, m] mask targets of the P box-level foreground RoIs
    box_targets: Tensor  # [R, 4]


@dataclass
class _Round:
    boxes: list[Tensor]  # per image [R_b, 4]
    mask_logits: Tensor  # [R, m, m]
    stage3: ClassStageOutput
    targets: _RoundTargets | None  # training only


class MNCCascade(nn.Module):
    """Stages 2..num_stages of MNC on top of a feature extractor and a proposal generator."""

    def __init__(
        self,
        *,
        roi_warp: RoIWarp,
        mask_stage: MaskStage,
        class_stage: ClassStage,
        num_stages: int = MNCConfig.num_stages,
        share_weights: bool = MNCConfig.share_weights,
        box_grad: bool = MNCConfig.box_grad,
        box_grad_clip: float | None = MNCConfig.box_grad_clip,
        loss_weights: StageLossWeights | Sequence[StageLossWeights] = MNCConfig.loss_weights,
        sampling: RoISampling = MNCConfig.sampling,
        box_coder: BoxCoder | None = None,
        seg_label_mask_thr: float = MNCConfig.seg_label_mask_thr,
        seg_label_iou: float = MNCConfig.seg_label_iou,
    ):
        """`share_weights=False` gives every round its own copy of the stage modules (starting from the same
        initial weights); `box_grad_clip` bounds element-wise, per image, the gradient that later rounds send
        into a round's box deltas (MNC-code: 1/512; None: unbounded; see `box_grad_bound`); `loss_weights` is
        one StageLossWeights (whose terms may give one number per round) or one per round; `seg_label_*`
        define the mask-level labels (used when `class_stage` has a mask-level classifier)."""
        super().__init__()
        self.num_rounds = num_rounds(num_stages)
        self.loss_weights = round_loss_weights(loss_weights, self.num_rounds)
        if box_grad_clip is not None and box_grad_clip <= 0:
            raise ParameterError("box_grad_clip", f"must be positive or None, got {box_grad_clip}")
        if not 0.0 < seg_label_mask_thr < 1.0:
            raise ParameterError("seg_label_mask_thr", f"must be in (0, 1), got {seg_label_mask_thr}")
        if not 0.0 < seg_label_iou <= 1.0:
            raise ParameterError("seg_label_iou", f"must be in (0, 1], got {seg_label_iou}")
        self.num_stages = num_stages
        self.share_weights = share_weights
        self.box_grad = box_grad
        self.box_grad_clip = box_grad_clip
        self.sampling = sampling
        self.box_coder = box_coder if box_coder is not None else BoxCoder()
        self.seg_label_mask_thr = seg_label_mask_thr
        self.seg_label_iou = seg_label_iou
        self.roi_warp = roi_warp
        num_copies = 1 if share_weights else self.num_rounds
        self.mask_stages = nn.ModuleList(
            [mask_stage] + [copy.deepcopy(mask_stage) for _ in range(num_copies - 1)]
        )
        self.class_stages = nn.ModuleList(
            [class_stage] + [copy.deepcopy(class_stage) for _ in range(num_copies - 1)]
        )

    @classmethod
    def from_config(cls, config: MNCConfig) -> MNCCascade:
        """The cascade `config` describes (every module built from its fields)."""
        for required in ("num_classes", "in_channels"):
            if getattr(config, required) is None:
                raise ParameterError(required, "required")
        return cls(
            roi_warp=RoIWarp(
                featmap_strides=config.featmap_strides,
                output_size=config.warp_size,
                finest_scale=config.finest_scale,
            ),
            mask_stage=MaskStage(
                in_channels=config.in_channels,
                warp_size=config.warp_size,
                mask_size=config.mask_size,
                hidden_dim=config.mask_hidden_dim,
            ),
            class_stage=ClassStage(
                in_channels=config.in_channels,
                num_classes=config.num_classes,
                pooled_size=config.cls_pooled_size,
                fc_dim=config.cls_fc_dim,
                num_fcs=config.cls_num_fcs,
                labels=config.stage3_labels,
            ),
            num_stages=config.num_stages,
            share_weights=bool(config.share_weights),
            box_grad=bool(config.box_grad),
            box_grad_clip=config.box_grad_clip,
            loss_weights=config.loss_weights,
            sampling=config.sampling,
            box_coder=BoxCoder(stds=config.box_target_stds),
            seg_label_mask_thr=config.seg_label_mask_thr,
            seg_label_iou=config.seg_label_iou,
        )

    @property
    def stage3_labels(self) -> str:
        return self.class_stages[0].labels

    def box_grad_bound(self, num_images: int, loss_scale: float = 1.0) -> float | None:
        """The element-wise bound on the box gradient of a batch of `num_images` images.

        MNC-code trains on one image per batch and clips that image's gradient at `box_grad_clip`. The losses
        here are means over the batch, which scales each image's gradient by 1 / num_images, so the same
        per-image bound is `box_grad_clip / num_images`; otherwise the box gradient outweighs the RPN's own
        regression loss num_images times more than in MNC-code.

        Under mixed precision a GradScaler multiplies the loss by `loss_scale` before the backward pass
        (mmengine's AmpOptimWrapper: `loss_scaler.scale(loss).backward()`) and divides the gradients only at
        the optimizer step, so every gradient reaching the clamp is `loss_scale` times the true one: the bound
        is scaled alike, and the clamp acts on the true gradient.
        """
        if self.box_grad_clip is None:
            return None
        return self.box_grad_clip / max(num_images, 1) * loss_scale

    def _round_targets(
        self,
        boxes: Sequence[Tensor],
        mask_logits: Tensor,
        targets: Sequence[InstanceTargets],
        gt_areas: Sequence[Tensor],
    ) -> _RoundTargets:
        """Labels and regression targets of a round's RoIs, from box IoU and (mask-level) mask IoU."""
        assignments = [assign_rois(b, t, fg_iou=self.sampling.fg_iou) for b, t in zip(boxes, targets)]
        labels = torch.cat([a.labels for a in assignments])
        mask_size = mask_logits.shape[-1]
        positive_masks = torch.cat(
            [mask_targets(b, a, t, mask_size) for b, a, t in zip(boxes, assignments, targets)]
        )
        seg_labels = None
        if self.stage3_labels != "box":
            foreground = labels > 0
            matched_areas = torch.cat(
                [areas[a.matched_gt[a.labels > 0]] for areas, a in zip(gt_areas, assignments)]
            )
            seg_labels = torch.zeros_like(labels)
            coverage = torch.cat(
                [mask_coverage(b, a, t, mask_size) for b, a, t in zip(boxes, assignments, targets)]
            )
            seg_labels[foreground] = mask_level_labels(
                mask_logits[foreground],
                coverage,
                torch.cat(list(boxes))[foreground],
                matched_areas,
                labels[foreground],
                mask_thr=self.seg_label_mask_thr,
                iou_thr=self.seg_label_iou,
            )
        regression_targets = torch.cat(
            [box_targets(b, a, t, self.box_coder) for b, a, t in zip(boxes, assignments, targets)]
        )
        return _RoundTargets(labels, seg_labels, positive_masks, regression_targets)

    def _run_round(
        self,
        round_index: int,
        features: Sequence[Tensor],
        boxes: list[Tensor],
        targets: Sequence[InstanceTargets] | None,
        gt_areas: Sequence[Tensor] | None,
    ) -> _Round:
        """One mask/classification round on `boxes`; with `targets` (training) also its labels and targets."""
        stage_index = 0 if self.share_weights else round_index
        mask_stage, class_stage = self.mask_stages[stage_index], self.class_stages[stage_index]
        roi_features = self.roi_warp.pooled(features, boxes, fine_size=mask_stage.pooled_size,
                                            coarse_size=class_stage.pooled_size)
        mask_logits = mask_stage(roi_features)
        round_targets = None
        guiding_masks = mask_logits
        if targets is not None:
            round_targets = self._round_targets(boxes, mask_logits, targets, gt_areas)
            scoring = round_targets.labels if round_targets.seg_labels is None else round_targets.seg_labels
            # As MNC-code's MaskLayer: only the scoring classifier's positives have an object mask for
            # classification to refine.
            guiding_masks = torch.where((scoring > 0)[:, None, None], mask_logits, mask_logits.detach())
        stage3 = class_stage(roi_features, guiding_masks)
        return _Round(boxes=boxes, mask_logits=mask_logits, stage3=stage3, targets=round_targets)

    def _run_rounds(
        self,
        features: Sequence[Tensor],
        boxes: list[Tensor],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[InstanceTargets] | None = None,
        loss_scale: float = 1.0,
    ) -> list[_Round]:
        """Every round, each on the boxes the previous one regressed: the loop `loss` and `predict` share
        (detectron2's CascadeROIHeads._forward_box)."""
        gt_areas = None if targets is None else [t.masks.flatten(1).sum(dim=1) for t in targets]
        grad_bound = self.box_grad_bound(len(boxes), loss_scale)
        rounds: list[_Round] = []
        for round_index in range(self.num_rounds):
            if round_index > 0:
                boxes = self._regress(rounds[-1].boxes, rounds[-1].stage3, image_sizes, grad_bound)
                if targets is not None:
                    boxes = [torch.cat((b, t.boxes.to(b.dtype))) for b, t in zip(boxes, targets)]
            rounds.append(self._run_round(round_index, features, boxes, targets, gt_areas))
        return rounds

    def _regress(
        self,
        boxes: Sequence[Tensor],
        stage3: ClassStageOutput,
        image_sizes: Sequence[tuple[int, int]],
        grad_bound: float | None = None,
    ) -> list[Tensor]:
        """Each box moved by the deltas of its highest-scoring foreground class, clipped to its image.

        `grad_bound` clamps the gradient reaching those deltas; as in MNC-code's stage bridge, a box that had
        to be clipped sends no gradient into its deltas.
        """
        all_boxes = torch.cat(list(boxes), dim=0)
        best_class = stage3.scoring_logits.detach()[:, 1:].argmax(dim=1)
        deltas = stage3.box_deltas[torch.arange(all_boxes.shape[0], device=all_boxes.device), best_class]
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
        loss_scale: float = 1.0,
    ) -> dict[str, Tensor]:
        """Weighted losses of every stage 2..num_stages.

        Args:
            features: per level [B, C, H_l, W_l].
            proposals: B tensors [P_b, 4] (input pixels), differentiable w.r.t. stage 1 when box_grad is True.
            targets: B ground truths (labels 1..N).
            image_sizes: B (height, width) of the unpadded network inputs.
            loss_scale: the factor a GradScaler multiplies the loss by before backward (see `box_grad_bound`).

        Returns:
            {"loss_mask_s2", "loss_cls_s3" (box-level classifier), "loss_seg_cls_s3" (mask-level classifier),
            "loss_box_s3", "loss_mask_s4", ...}, already weighted; a classifier stage 3 lacks has no entry.
        """
        if not (len(proposals) == len(targets) == len(image_sizes)):
            raise ValueError("proposals, targets and image_sizes must have one entry per image")
        if not self.box_grad:
            proposals = [p.detach() for p in proposals]
        candidates = [torch.cat((p, t.boxes.to(p.dtype))) for p, t in zip(proposals, targets)]
        boxes = [c[sample_rois(c, t.boxes, self.sampling)] for c, t in zip(candidates, targets)]

        losses: dict[str, Tensor] = {}
        rounds = self._run_rounds(features, boxes, image_sizes, targets, loss_scale)
        for round_index, result in enumerate(rounds):
            weights, round_targets, stage3 = self.loss_weights[round_index], result.targets, result.stage3
            mask_stage_number, class_stage_number = 2 * round_index + 2, 2 * round_index + 3
            foreground = round_targets.labels > 0
            losses[f"loss_mask_s{mask_stage_number}"] = weights.mask * mask_loss(
                result.mask_logits[foreground], round_targets.positive_masks
            )
            if stage3.cls_logits is not None:
                losses[f"loss_cls_s{class_stage_number}"] = weights.cls * classification_loss(
                    stage3.cls_logits, round_targets.labels
                )
            if stage3.seg_cls_logits is not None:
                losses[f"loss_seg_cls_s{class_stage_number}"] = weights.cls * classification_loss(
                    stage3.seg_cls_logits, round_targets.seg_labels
                )
            losses[f"loss_box_s{class_stage_number}"] = weights.box * box_loss(
                stage3.box_deltas, round_targets.labels, round_targets.box_targets
            )
        return losses

    def predict(
        self,
        features: Sequence[Tensor],
        proposals: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[CascadeOutput]:
        """Instances of all rounds for each image: round 1 on the proposals, round r on round r-1's boxes
        (MNC's 5-stage inference pools stage 2/3 outputs on the 300 proposals with stage 4/5 outputs on
        their regressed boxes: 600 instances), scored by stage 3's scoring classifier."""
        rounds = self._run_rounds(features, [p.detach() for p in proposals], image_sizes)
        per_image: list[list[CascadeOutput]] = [[] for _ in proposals]
        for result in rounds:
            counts = [b.shape[0] for b in result.boxes]
            class_boxes = self.box_coder.decode(torch.cat(result.boxes, dim=0), result.stage3.box_deltas)
            for image, (image_boxes, mask_logits, logits, image_class_boxes, size) in enumerate(
                zip(
                    result.boxes,
                    result.mask_logits.split(counts),
                    result.stage3.scoring_logits.split(counts),
                    class_boxes.split(counts),
                    image_sizes,
                )
            ):
                per_image[image].append(
                    CascadeOutput(
                        mask_boxes=image_boxes,
                        mask_logits=mask_logits,
                        class_probs=logits.softmax(dim=1),
                        class_boxes=clip_boxes(image_class_boxes, size),
                    )
                )
        return [
            CascadeOutput(
                mask_boxes=torch.cat([r.mask_boxes for r in instances]),
                mask_logits=torch.cat([r.mask_logits for r in instances]),
                class_probs=torch.cat([r.class_probs for r in instances]),
                class_boxes=torch.cat([r.class_boxes for r in instances]),
            )
            for instances in per_image
        ]
