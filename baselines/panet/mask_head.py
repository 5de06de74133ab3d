"""PANet's mask head: adaptive feature pooling after conv1 and fully-connected fusion from conv3 (Fig. 4)."""

from __future__ import annotations

import torch
from mmcv.cnn import ConvModule
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class FusedFCNMaskHead(FCNMaskHead):
    """Mask R-CNN's FCN mask head plus PANet's two changes, each optional.

    - ``num_levels > 1`` (adaptive feature pooling): input ``[num_rois, num_levels, C, 14, 14]`` from
      :class:`AdaptiveRoIExtractor`; each level has its own conv1 and the levels are fused by element-wise
      max; conv2..conv4, the deconv and the per-class 1x1 logits follow as in ``FCNMaskHead``.
    - ``fc_fusion`` (fully-connected fusion): a branch from conv3's output — two 3x3 convs (the second halves
      the channels), then one fc to ``mask_size**2`` — predicts a class-agnostic mask whose logits are added
      to every class's FCN logits. (The authors' release puts a ReLU after that fc; the paper does not, nor do
      we.)

    With ``num_levels=1, fc_fusion=False`` this is exactly ``FCNMaskHead``. Other arguments as
    ``FCNMaskHead``.
    """

    def __init__(self, *args, num_levels: int = 4, fc_fusion: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.num_convs < 3:
            raise ValueError("FusedFCNMaskHead needs num_convs >= 3 (fusion branches from conv3), "
                             f"got {self.num_convs}")
        if self.upsample_method not in ("deconv", "nearest", "bilinear"):
            raise ValueError("FusedFCNMaskHead supports deconv/nearest/bilinear upsampling, "
                             f"not {self.upsample_method}")
        self.num_levels = num_levels
        self.fc_fusion = fc_fusion
        channels = self.conv_out_channels
        conv1 = dict(kernel_size=self.conv_kernel_size, padding=(self.conv_kernel_size - 1) // 2,
                     conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
        # conv1 once per level (the first copy is FCNMaskHead's own conv1); conv2.. stay shared.
        self.level_convs = nn.ModuleList(
            [self.convs[0]]
            + [ConvModule(self.in_channels, channels, **conv1) for _ in range(num_levels - 1)])
        self.convs = self.convs[1:]
        self.mask_size = self.roi_feat_size[0] * self.scale_factor
        if fc_fusion:
            self.fusion_convs = nn.Sequential(
                ConvModule(channels, channels, **conv1),
                ConvModule(channels, channels // 2, **conv1))
            roi_area = self.roi_feat_size[0] * self.roi_feat_size[1]
            self.fusion_fc = nn.Linear(channels // 2 * roi_area, self.mask_size**2)

    def init_weights(self) -> None:
        super().init_weights()
        if self.fc_fusion:  # as the authors' release: N(0, 0.01) weights, zero bias
            nn.init.normal_(self.fusion_fc.weight, std=0.01)
            nn.init.constant_(self.fusion_fc.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        levels = x.unbind(dim=1) if x.dim() == 5 else (x,)
        if len(levels) != self.num_levels:
            raise ValueError(f"FusedFCNMaskHead expects {self.num_levels} level(s) of RoI features, "
                             f"got {len(levels)}")
        x = torch.stack([conv(level) for conv, level in zip(self.level_convs, levels)]).amax(dim=0)  # conv1
        conv3 = None
        for index, conv in enumerate(self.convs, start=2):
            x = conv(x)
            if index == 3:
                conv3 = x
        x = self.upsample(x)
        if self.upsample_method == "deconv":
            x = self.relu(x)
        mask_logits = self.conv_logits(x)  # [num_rois, num_classes (or 1), mask_size, mask_size]
        if self.fc_fusion:
            fc_mask = self.fusion_fc(self.fusion_convs(conv3).flatten(1))
            mask_logits = mask_logits + fc_mask.view(-1, 1, self.mask_size, self.mask_size)
        return mask_logits
