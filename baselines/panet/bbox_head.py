"""Adaptive feature pooling in the box head: one fc1 per FPN level, element-wise max, then fc2
(PANet Fig. 6)."""

from __future__ import annotations

import torch
from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead
from mmdet.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class AFPBBoxHead(ConvFCBBoxHead):
    """Mask R-CNN's two-fc box head with adaptive feature pooling.

    Input: ``[num_rois, num_levels, C, 7, 7]`` from :class:`AdaptiveRoIExtractor` (or ``[num_rois, C, 7, 7]``
    when ``num_levels == 1``). Each level goes through its own fc1 (+ReLU); the levels are fused by
    element-wise ``fusion`` ('max' as in the paper, or 'sum'); fc2 (+ReLU) and the classifier / box regressor
    follow.
    With ``num_levels=1`` this is exactly mmdet's ``Shared2FCBBoxHead``. Other arguments as
    ``ConvFCBBoxHead``.
    """

    def __init__(self, *args, num_levels: int = 4, fusion: str = "max", **kwargs) -> None:
        if fusion not in ("max", "sum"):
            raise ValueError(f"fusion must be 'max' or 'sum', got {fusion!r}")
        user_init_cfg = kwargs.get("init_cfg")
        super().__init__(*args, num_shared_convs=0, num_shared_fcs=2, num_cls_convs=0, num_cls_fcs=0,
                         num_reg_convs=0, num_reg_fcs=0, **kwargs)
        self.num_levels = num_levels
        self.fusion = fusion
        fc1 = self.shared_fcs[0]
        self.level_fcs = nn.ModuleList(
            nn.Linear(fc1.in_features, fc1.out_features) for _ in range(num_levels))
        self.shared_fcs = self.shared_fcs[1:]  # fc2, after the fusion
        if user_init_cfg is None:  # ConvFCBBoxHead's default: Xavier for its fcs; add the per-level fc1s
            self.init_cfg[-1]["override"].append(dict(name="level_fcs"))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        levels = x.unbind(dim=1) if x.dim() == 5 else (x,)
        if len(levels) != self.num_levels:
            raise ValueError(f"AFPBBoxHead expects {self.num_levels} level(s) of RoI features, "
                             f"got {len(levels)}")
        per_level = torch.stack(
            [self.relu(fc(level.flatten(1))) for fc, level in zip(self.level_fcs, levels)])
        x = per_level.amax(dim=0) if self.fusion == "max" else per_level.sum(dim=0)
        for fc in self.shared_fcs:
            x = self.relu(fc(x))
        cls_score = self.fc_cls(x) if self.with_cls else None
        bbox_pred = self.fc_reg(x) if self.with_reg else None
        return cls_score, bbox_pred
