"""Adaptive feature pooling, step 1: pool each RoI from every FPN level instead of the one its size
maps to."""

from __future__ import annotations

import torch
from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
from mmdet.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class AdaptiveRoIExtractor(BaseRoIExtractor):
    """RoIAlign every RoI on every level in ``featmap_strides``.

    Returns ``[num_rois, num_levels, channels, size, size]``: the per-level grids stay separate because PANet
    fuses them only after one parameter layer per level (see :class:`AFPBBoxHead`, :class:`FusedFCNMaskHead`).
    Takes the same arguments as mmdet's ``SingleRoIExtractor`` (``roi_layer``, ``out_channels``,
    ``featmap_strides``).
    """

    def forward(self, feats: tuple[Tensor, ...], rois: Tensor,
                roi_scale_factor: float | None = None) -> Tensor:
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)
        feats = feats[: self.num_inputs]
        # As mmdet's SingleRoIExtractor: under mixed precision the features are fp16 while the training RoIs
        # (ground truth added) are fp32, and mmcv's CUDA RoIAlign reads both as the features' type.
        rois = rois.type_as(feats[0])
        if rois.size(0) == 0:
            size = self.roi_layers[0].output_size
            empty = feats[0].new_zeros(0, len(feats), self.out_channels, *size)
            # Keep every level in the autograd graph (distributed training expects all parameters used).
            return empty + sum(feat.sum() for feat in feats) * 0
        pooled = [roi_layer(feat, rois) for roi_layer, feat in zip(self.roi_layers, feats)]
        return torch.stack(pooled, dim=1)
