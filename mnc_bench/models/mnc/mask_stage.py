"""Stage 2 of MNC: a class-agnostic m x m mask for every RoI, from its warped features."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mnc_bench.models.mnc.config import MNCConfig, ParameterError
from mnc_bench.models.mnc.roi_features import PooledLinear, RoIFeatures, as_roi_features


class MaskStage(nn.Module):
    """Warped S x S features -> 2x2 max-pool -> fc(hidden) -> ReLU -> fc(m * m) per-pixel mask logits.

    The paper uses S = 28 (pooled to 14 x 14), hidden = 256 and m = 28; MNC-code uses m = 21.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        warp_size: int = MNCConfig.warp_size,
        mask_size: int = MNCConfig.mask_size,
        hidden_dim: int = MNCConfig.mask_hidden_dim,
    ):
        super().__init__()
        if in_channels < 1:
            raise ParameterError("in_channels", f"must be >= 1, got {in_channels}")
        if warp_size < 2 or warp_size % 2:
            raise ParameterError("warp_size", f"must be even and >= 2 (max-pooled by 2), got {warp_size}")
        if mask_size < 4:
            raise ParameterError("mask_size", f"must be >= 4, got {mask_size}")
        if hidden_dim < 1:
            raise ParameterError("mask_hidden_dim", f"must be >= 1, got {hidden_dim}")
        self.warp_size = warp_size
        self.mask_size = mask_size
        pooled = warp_size // 2
        self.hidden = PooledLinear(in_channels * pooled * pooled, hidden_dim)
        self.predictor = nn.Linear(hidden_dim, mask_size * mask_size)
        nn.init.xavier_uniform_(self.hidden.weight)
        nn.init.zeros_(self.hidden.bias)
        # Small output weights start every mask near probability 0.5 (MNC-code: Gaussian std 0.001).
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    @property
    def pooled_size(self) -> int:
        """The side of the max-pooled features the fc layers read: S / 2."""
        return self.warp_size // 2

    def forward(self, roi_features: Tensor | RoIFeatures) -> Tensor:
        """Warped features [R, C, S, S] (or the `RoIFeatures` the cascade shares with stage 3) -> [R, m, m]
        mask logits over each RoI."""
        pooled = as_roi_features(roi_features).max_pool(self.pooled_size)
        hidden = F.relu(self.hidden(pooled))
        return self.predictor(hidden).view(-1, self.mask_size, self.mask_size)


def mask_loss(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """Mean per-pixel binary cross-entropy over the P foreground RoIs ([P, m, m] each); 0 when P = 0."""
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(mask_logits, targets.to(mask_logits.dtype))

