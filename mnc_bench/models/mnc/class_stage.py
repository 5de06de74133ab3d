"""Stage 3 of MNC: mask-guided classification and class-wise box regression."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnc_bench.models.mnc.config import STAGE3_LABELS, MNCConfig, ParameterError
from mnc_bench.models.mnc.roi_features import PooledLinear, RoIFeatures, as_roi_features


def _fc_path(in_features: int, width: int, num_fcs: int) -> nn.Sequential:
    """`num_fcs` fc + ReLU layers; the first reads pooled features [R, C, h, w] (`PooledLinear`)."""
    layers: list[nn.Module] = []
    for index in range(num_fcs):
        linear = PooledLinear(in_features, width) if index == 0 else nn.Linear(width, width)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _classifier(in_features: int, num_classes: int) -> nn.Linear:
    linear = nn.Linear(in_features, num_classes + 1)
    nn.init.normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)
    return linear


@dataclass
class ClassStageOutput:
    """Stage 3's outputs for R RoIs. A classifier the stage does not have (see `labels`) is None."""

    cls_logits: Tensor | None  # [R, N + 1], trained on box-IoU labels (MNC-code's cls_score)
    seg_cls_logits: Tensor | None  # [R, N + 1], trained on mask-IoU labels (MNC-code's seg_cls_score)
    box_deltas: Tensor  # [R, N, 4]

    @property
    def scoring_logits(self) -> Tensor:
        """The logits that score instances at test time and choose each RoI's class in the stage bridge: the
        mask-level classifier's when there is one (MNC-code's seg_cls_prob), else the box-level one's."""
        return self.seg_cls_logits if self.seg_cls_logits is not None else self.cls_logits


class ClassStage(nn.Module):
    """Classify each RoI from its box features and its mask-weighted ("masked") features.

    masked = warped features x stage-2 mask probabilities (resized to the warp grid), max-pooled to
    `pooled_size` like the box features: the product is taken before pooling, on the finest grid available
    (MNC-code multiplies its 14 x 14 warped conv5 features by the mask resized to 14 x 14, then pools).
    The box features and the masked features each go through their own path of `num_fcs` fc layers
    (2 x 4096 in the paper); the two outputs are concatenated and feed the classifiers and a class-wise box
    regressor. `labels` chooses the classifiers: "box" (an (N + 1)-way classifier for box-IoU labels), "mask"
    (one for mask-IoU labels) or "both" (MNC-code's cls_score and seg_cls_score side by side).
    The mask probabilities are not detached: the classification loss also trains stage 2 (in training only
    through the RoIs `MNCCascade` lets through).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        pooled_size: int = MNCConfig.cls_pooled_size,
        fc_dim: int = MNCConfig.cls_fc_dim,
        num_fcs: int = MNCConfig.cls_num_fcs,
        labels: str = MNCConfig.stage3_labels,
    ):
        super().__init__()
        if in_channels < 1:
            raise ParameterError("in_channels", f"must be >= 1, got {in_channels}")
        if num_classes < 1:
            raise ParameterError("num_classes", f"must be >= 1, got {num_classes}")
        if pooled_size < 1:
            raise ParameterError("cls_pooled_size", f"must be >= 1, got {pooled_size}")
        if fc_dim < 1:
            raise ParameterError("cls_fc_dim", f"must be >= 1, got {fc_dim}")
        if num_fcs < 1:
            raise ParameterError("cls_num_fcs", f"must be >= 1, got {num_fcs}")
        if labels not in STAGE3_LABELS:
            raise ParameterError("stage3_labels",
                                 f"must be one of {', '.join(STAGE3_LABELS)}, got {labels!r}")
        self.num_classes = num_classes
        self.pooled_size = pooled_size
        self.labels = labels
        in_features = in_channels * pooled_size * pooled_size
        self.box_path = _fc_path(in_features, fc_dim, num_fcs)
        self.mask_path = _fc_path(in_features, fc_dim, num_fcs)
        self.classifier = _classifier(2 * fc_dim, num_classes) if labels in ("box", "both") else None
        self.seg_classifier = _classifier(2 * fc_dim, num_classes) if labels in ("mask", "both") else None
        self.box_regressor = nn.Linear(2 * fc_dim, 4 * num_classes)
        nn.init.normal_(self.box_regressor.weight, std=0.001)
        nn.init.zeros_(self.box_regressor.bias)

    def forward(self, roi_features: Tensor | RoIFeatures, mask_logits: Tensor) -> ClassStageOutput:
        """Args: roi_features: warped features [R, C, S, S] (or the `RoIFeatures` the cascade shares with
        stage 2); mask_logits [R, m, m] from stage 2 for the same RoIs."""
        features = as_roi_features(roi_features)
        warp_size = (features.size, features.size)
        masks = torch.sigmoid(mask_logits)[:, None]
        if tuple(masks.shape[-2:]) != warp_size:  # also for a batch without RoIs: the product needs the shape
            masks = F.interpolate(masks, size=warp_size, mode="bilinear", align_corners=False)
        box_features = self.box_path(features.max_pool(self.pooled_size))
        mask_features = self.mask_path(features.masked_max_pool(masks, self.pooled_size))
        joint = torch.cat((mask_features, box_features), dim=1)
        return ClassStageOutput(
            cls_logits=self.classifier(joint) if self.classifier is not None else None,
            seg_cls_logits=self.seg_classifier(joint) if self.seg_classifier is not None else None,
            box_deltas=self.box_regressor(joint).view(-1, self.num_classes, 4),
        )


def classification_loss(class_logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy over all R RoIs (0 when R = 0). Args: class_logits [R, N + 1]; labels [R]."""
    if class_logits.shape[0] == 0:
        return class_logits.sum() * 0.0
    return F.cross_entropy(class_logits, labels)


def box_loss(box_deltas: Tensor, labels: Tensor, box_targets: Tensor) -> Tensor:
    """Smooth-L1 (beta 1) of the true class's deltas on the foreground RoIs, normalised by the number of RoIs
    R (foreground and background) as in Fast R-CNN; 0 when R = 0.

    Args: box_deltas [R, N, 4]; labels [R] (0 = background); box_targets [R, 4].
    """
    num_rois = box_deltas.shape[0]
    if num_rois == 0:
        return box_deltas.sum() * 0.0
    foreground = (labels > 0).nonzero().squeeze(1)
    predicted = box_deltas[foreground, labels[foreground] - 1]
    return F.smooth_l1_loss(predicted, box_targets[foreground], beta=1.0, reduction="sum") / num_rois
