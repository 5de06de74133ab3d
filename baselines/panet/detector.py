"""PANet: Mask R-CNN with three switchable components, so the paper's component ablation can be rerun."""

from __future__ import annotations

import copy

from mmdet.models.detectors import MaskRCNN
from mmdet.registry import MODELS

NECK_TYPES = {True: "PAFPN", False: "FPN"}
EXTRACTOR_TYPES = {True: "AdaptiveRoIExtractor", False: "SingleRoIExtractor"}


@MODELS.register_module()
class PANet(MaskRCNN):
    """Mask R-CNN + PANet's components, each behind one switch (all on by default).

    - ``bottom_up_path``: the neck is mmdet's ``PAFPN`` (FPN + bottom-up path augmentation), else ``FPN``.
    - ``adaptive_pooling``: box and mask RoIs are pooled from every FPN level and fused after the heads'
      first layer (``AdaptiveRoIExtractor`` + per-level first layers), else pooled from one level each
      (``SingleRoIExtractor``).
    - ``fully_connected_fusion``: the mask head's fc branch from conv3 is summed with the FCN mask.

    The config names the full PANet (neck ``PAFPN``, ``AdaptiveRoIExtractor``, ``AFPBBoxHead``,
    ``FusedFCNMaskHead``); each switch turned off swaps in the Mask R-CNN part. All off = Mask R-CNN.
    Other arguments as ``MaskRCNN``.
    """

    def __init__(self, *, neck: dict, roi_head: dict, bottom_up_path: bool = True,
                 adaptive_pooling: bool = True, fully_connected_fusion: bool = True, **kwargs) -> None:
        neck = switch_neck(neck, bottom_up_path=bottom_up_path)
        roi_head = switch_roi_head(roi_head, adaptive_pooling=adaptive_pooling,
                                   fully_connected_fusion=fully_connected_fusion)
        super().__init__(neck=neck, roi_head=roi_head, **kwargs)
        self.bottom_up_path = bottom_up_path
        self.adaptive_pooling = adaptive_pooling
        self.fully_connected_fusion = fully_connected_fusion


def switch_neck(neck: dict, *, bottom_up_path: bool) -> dict:
    """PAFPN with the bottom-up path, FPN without (both take the same arguments)."""
    if neck.get("type") not in NECK_TYPES.values():
        raise ValueError(f"PANet's neck must be PAFPN or FPN, got {neck.get('type')!r}")
    neck = copy.deepcopy(neck)
    neck["type"] = NECK_TYPES[bool(bottom_up_path)]
    return neck


def switch_roi_head(roi_head: dict, *, adaptive_pooling: bool, fully_connected_fusion: bool) -> dict:
    """Choose the RoI extractors and set the heads' number of pooled levels and the fc-fusion branch."""
    roi_head = copy.deepcopy(roi_head)
    for head, expected in (("bbox_head", "AFPBBoxHead"), ("mask_head", "FusedFCNMaskHead")):
        if roi_head.get(head, {}).get("type") != expected:
            raise ValueError(f"PANet's roi_head.{head} must be {expected}, "
                             f"got {roi_head.get(head, {}).get('type')!r}")
    for extractor, head in (("bbox_roi_extractor", "bbox_head"), ("mask_roi_extractor", "mask_head")):
        if roi_head[extractor].get("type") not in EXTRACTOR_TYPES.values():
            raise ValueError(f"PANet's roi_head.{extractor} must be AdaptiveRoIExtractor or "
                             "SingleRoIExtractor")
        roi_head[extractor]["type"] = EXTRACTOR_TYPES[bool(adaptive_pooling)]
        num_levels = len(roi_head[extractor]["featmap_strides"])
        roi_head[head]["num_levels"] = num_levels if adaptive_pooling else 1
    roi_head["mask_head"]["fc_fusion"] = bool(fully_connected_fusion)
    return roi_head
