"""Differentiable RoI warping: bilinear sampling of the features inside each box onto a fixed grid.

MNC's point is that later stages train the boxes that feed them, so unlike RoIPool (and mmcv's RoIAlign, whose
backward ignores the box) the output here is differentiable with respect to the features AND the box
coordinates: the sampling grid is computed from the boxes and `F.grid_sample` differentiates through the grid.

Coordinate conventions (the same as RoIAlign with `aligned=True` and one sample per bin):
- boxes are (x1, y1, x2, y2) in input-image pixels where pixel i spans [i, i + 1);
- feature cell j of a level with stride s is centred at (j + 0.5) * s;
- output bin (u, v) of an S x S grid samples the box at its bin centre,
  x = x1 + (u + 0.5) * (x2 - x1) / S, likewise y.
Border rule (MNC-code's ROIWarping layer, caffe-mnc `roi_warping_layer.cu`): a sample inside the feature
map's extent, [0, W * stride] x [0, H * stride] in input pixels, reads the bilinear value with coordinates
clamped to the outermost cell centres, so the half cell along the border holds the border value instead of
fading towards zero; a sample outside the extent reads 0, so a box partly or wholly outside the map still
works. (`grid_sample`'s zero padding alone would halve the value at the map's edge; its border padding alone
would extend the border values indefinitely.) The output is piecewise linear in the box coordinates; its
derivative jumps where a sample crosses a cell centre or the map's edge, and is 0 along an axis where a sample
is clamped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnc_bench.models.mnc.config import MNCConfig, ParameterError


def warp_rois(features: Tensor, boxes: Sequence[Tensor], *, stride: float, output_size: int) -> Tensor:
    """Warp every box of every image from one feature level.

    Args:
        features: [B, C, H, W], one level of stride `stride`.
        boxes: B tensors [R_b, 4] (x1, y1, x2, y2) in input-image pixels.
        stride: input pixels per feature cell.
        output_size: S of the S x S output grid.

    Returns:
        [sum_b R_b, C, S, S], the boxes of image 0 first.
    """
    if len(boxes) != features.shape[0]:
        raise ValueError(f"got boxes for {len(boxes)} images but features for {features.shape[0]}")
    channels, height, width = features.shape[1:]
    bins = torch.arange(output_size, dtype=features.dtype, device=features.device)
    bin_centres = (bins + 0.5) / output_size
    warped = []
    for image_index, image_boxes in enumerate(boxes):
        num_boxes = image_boxes.shape[0]
        if num_boxes == 0:
            warped.append(features.new_zeros(0, channels, output_size, output_size))
            continue
        image_boxes = image_boxes.to(features.dtype)
        x1, y1, x2, y2 = image_boxes.unbind(dim=1)
        xs = x1[:, None] + bin_centres[None, :] * (x2 - x1)[:, None]  # [R, S]
        ys = y1[:, None] + bin_centres[None, :] * (y2 - y1)[:, None]  # [R, S]
        # grid_sample with align_corners=False maps -1/+1 to the outer edges of the border cells.
        grid_x = xs / (stride * width) * 2 - 1
        grid_y = ys / (stride * height) * 2 - 1
        grid = torch.stack(
            (
                grid_x[:, None, :].expand(num_boxes, output_size, output_size),
                grid_y[:, :, None].expand(num_boxes, output_size, output_size),
            ),
            dim=-1,
        )  # [R, S, S, 2], last dim (x, y)
        # Stacking the R grids vertically samples all boxes of an image in one call without copying the
        # feature map once per box.
        sampled = F.grid_sample(
            features[image_index : image_index + 1],
            grid.reshape(1, num_boxes * output_size, output_size, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )  # [1, C, R * S, S]
        sampled = sampled.reshape(channels, num_boxes, output_size, output_size).transpose(0, 1)
        inside_x = ((grid_x >= -1) & (grid_x <= 1)).detach()  # [R, S]
        inside_y = ((grid_y >= -1) & (grid_y <= 1)).detach()
        inside = inside_y[:, :, None] & inside_x[:, None, :]  # [R, S(y), S(x)]
        if not inside.all():  # boxes clipped to the image never leave the map: skip the product then
            sampled = sampled * inside[:, None].to(sampled.dtype)
        warped.append(sampled)
    return torch.cat(warped, dim=0)


def map_boxes_to_levels(boxes: Tensor, *, num_levels: int, finest_scale: float) -> Tensor:
    """FPN level of each box, as mmdet's SingleRoIExtractor: floor(log2(sqrt(area) / finest_scale)).

    Args:
        boxes: [R, 4].

    Returns:
        [R] int64 in [0, num_levels).
    """
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


class RoIWarp(nn.Module):
    """Warp boxes to S x S from one level (stride-16 C4 features) or from a feature pyramid.

    With several levels each box reads the level chosen by its size (see `map_boxes_to_levels`); that choice
    is discrete and carries no gradient, the sampling within the level does.
    """

    def __init__(
        self,
        *,
        featmap_strides: Sequence[float] = MNCConfig.featmap_strides,
        output_size: int = MNCConfig.warp_size,
        finest_scale: float = MNCConfig.finest_scale,
    ):
        super().__init__()
        if len(featmap_strides) == 0:
            raise ParameterError("featmap_strides", "need at least one level")
        if any(s <= 0 for s in featmap_strides):
            raise ParameterError("featmap_strides", f"must be positive, got {list(featmap_strides)}")
        if output_size < 2:
            raise ParameterError("warp_size", f"must be >= 2, got {output_size}")
        if finest_scale <= 0:
            raise ParameterError("finest_scale", f"must be positive, got {finest_scale}")
        self.featmap_strides = tuple(float(s) for s in featmap_strides)
        self.output_size = output_size
        self.finest_scale = finest_scale

    def forward(self, features: Sequence[Tensor], boxes: Sequence[Tensor]) -> Tensor:
        """Args: features: per level [B, C, H_l, W_l] (extra levels beyond `featmap_strides` are ignored);
        boxes: B tensors [R_b, 4] in input pixels. Returns [sum_b R_b, C, S, S], image 0's boxes first."""
        num_levels = len(self.featmap_strides)
        if len(features) < num_levels:
            raise ValueError(f"expected {num_levels} feature levels, got {len(features)}")
        if num_levels == 1:
            return warp_rois(features[0], boxes, stride=self.featmap_strides[0], output_size=self.output_size)

        all_boxes = torch.cat(list(boxes), dim=0)
        image_ids = torch.cat(
            [torch.full((len(b),), i, dtype=torch.long, device=all_boxes.device) for i, b in enumerate(boxes)]
        )
        levels = map_boxes_to_levels(
            all_boxes.detach(), num_levels=num_levels, finest_scale=self.finest_scale
        )
        channels = features[0].shape[1]
        warped = features[0].new_zeros(all_boxes.shape[0], channels, self.output_size, self.output_size)
        for level, (level_features, stride) in enumerate(zip(features, self.featmap_strides)):
            selected = (levels == level).nonzero().squeeze(1)
            if selected.numel() == 0:
                continue
            selected_images = image_ids[selected]
            per_image = [all_boxes[selected[selected_images == i]] for i in range(len(boxes))]
            # warp_rois returns boxes grouped by image; sort `selected` the same way to scatter back.
            order = torch.argsort(selected_images, stable=True)
            warped[selected[order]] = warp_rois(
                level_features, per_image, stride=stride, output_size=self.output_size
            )
        return warped
