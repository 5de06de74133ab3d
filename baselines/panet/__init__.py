"""PANet (Liu et al., "Path Aggregation Network for Instance Segmentation", CVPR 2018) on mmdet.

mmdet ships the bottom-up path augmentation (neck ``PAFPN``); this package adds the other two components:

- adaptive feature pooling: :class:`AdaptiveRoIExtractor` pools every RoI from every FPN level;
  :class:`AFPBBoxHead` and :class:`FusedFCNMaskHead` give each level its own first layer and fuse the levels
  with an element-wise max (after fc1 in the box head, after conv1 in the mask head);
- fully-connected fusion: :class:`FusedFCNMaskHead` adds a class-agnostic fc mask, branched from conv3, to
  the FCN's per-class mask logits;

and :class:`PANet`, a Mask R-CNN whose three switches turn each component on or off.
"""

from .bbox_head import AFPBBoxHead
from .detector import PANet
from .mask_head import FusedFCNMaskHead
from .roi_extractor import AdaptiveRoIExtractor

__all__ = ["AdaptiveRoIExtractor", "AFPBBoxHead", "FusedFCNMaskHead", "PANet"]
