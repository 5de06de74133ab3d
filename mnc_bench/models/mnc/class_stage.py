"""Stage 3 of MNC: mask-guided classification and class-wise box regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _fc_path(in_features: int, width: int, num_fcs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(num_fcs):
        linear = nn.Linear(in_features if index == 0 else width, width)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ClassStage(nn.Module):
    """Classify each RoI from its box features and its mask-weighted ("masked") features.

    masked = warped features x stage-2 mask probabilities (resized to the warp grid), max-pooled to
    `pooled_size` like the box features: the product is taken before pooling, on the finest grid available
    (MNC-code multiplies its 14 x 14 warped conv5 features by the mask resized to 14 x 14, then pools).
    The box features and the masked features each go through their own path of `num_fcs` fc layers
    (2 x 4096 in the paper); the two outputs are concatenated and feed an (N + 1)-way classifier and a
    class-wise box regressor.
    The mask probabilities are not detached: the classification loss also trains stage 2 (in training only
    through foreground RoIs, which `MNCCascade` arranges).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        pooled_size: int = 7,
        fc_dim: int = 4096,
        num_fcs: int = 2,
    ):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels: must be >= 1, got {in_channels}")
        if num_classes < 1:
            raise ValueError(f"num_classes: must be >= 1, got {num_classes}")
        if pooled_size < 1:
            raise ValueError(f"cls_pooled_size: must be >= 1, got {pooled_size}")
        if fc_dim < 1:
            raise ValueError(f"cls_fc_dim: must be >= 1, got {fc_dim}")
        if num_fcs < 1:
            raise ValueError(f"cls_num_fcs: must be >= 1, got {num_fcs}")
        self.num_classes = num_classes
        self.pooled_size = pooled_size
        in_features = in_channels * pooled_size * pooled_size
        self.box_path = _fc_path(in_features, fc_dim, num_fcs)
        self.mask_path = _fc_path(in_features, fc_dim, num_fcs)
        self.classifier = nn.Linear(2 * fc_dim, num_classes + 1)
        self.box_regressor = nn.Linear(2 * fc_dim, 4 * num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        nn.init.normal_(self.box_regressor.weight, std=0.001)
        nn.init.zeros_(self.box_regressor.bias)

    def forward(self, roi_features: Tensor, mask_logits: Tensor) -> tuple[Tensor, Tensor]:
        """Args: roi_features [R, C, S, S]; mask_logits [R, m, m] from stage 2 for the same RoIs.

        Returns: class logits [R, N + 1] (0 = background) and box deltas [R, N, 4] (one box per class).
        """
        warp_size = roi_features.shape[-2:]
        masks = torch.sigmoid(mask_logits)[:, None]
        if tuple(masks.shape[-2:]) != tuple(warp_size) and masks.shape[0] > 0:
            masks = F.interpolate(masks, size=warp_size, mode="bilinear", align_corners=False)
        masked_features = roi_features * masks
        box_features = self.box_path(self._pool(roi_features))
        mask_features = self.mask_path(self._pool(masked_features))
        joint = torch.cat((mask_features, box_features), dim=1)
        class_logits = self.classifier(joint)
        box_deltas = self.box_regressor(joint).view(-1, self.num_classes, 4)
        return class_logits, box_deltas

    def _pool(self, features: Tensor) -> Tensor:
        return F.adaptive_max_pool2d(features, self.pooled_size).flatten(1)


def classification_losses(
    class_logits: Tensor, box_deltas: Tensor, labels: Tensor, box_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """Softmax cross-entropy over all R RoIs, and smooth-L1 (beta 1) of the true class's deltas on the
    foreground RoIs, normalised by R as in Fast R-CNN.

    Args: class_logits [R, N + 1]; box_deltas [R, N, 4]; labels [R] (0 = background); box_targets [R, 4].
    """
    num_rois = class_logits.shape[0]
    if num_rois == 0:
        zero = class_logits.sum() * 0.0 + box_deltas.sum() * 0.0
        return zero, zero
    loss_cls = F.cross_entropy(class_logits, labels)
    foreground = (labels > 0).nonzero().squeeze(1)
    predicted = box_deltas[foreground, labels[foreground] - 1]
    loss_box = F.smooth_l1_loss(predicted, box_targets[foreground], beta=1.0, reduction="sum") / num_rois
    return loss_cls, loss_box
