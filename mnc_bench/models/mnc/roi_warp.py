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

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnc_bench.models.mnc.config import MNCConfig, ParameterError

# Channel groups of one grid_sample call (batch items its CPU kernels share among threads); fixed, so that the
# rounding of the box gradient (summed over the groups) does not depend on the thread count.
_CHANNEL_GROUPS = 8


def warp_rois(features: Tensor, boxes: Sequence[Tensor], *, stride: float, output_size: int) -> Tensor:
    """Warp every box of every image from one feature level.

    Args:
        features: [B, C, H, W], one level of stride `stride`.
        boxes: B tensors [R_b, 4] (x1, y1, x2, y2) in input-image pixels.
        stride: input pixels per feature cell.
        output_size: S of the S x S output grid.

    Returns:
        [sum_b R_b, C, S, S], the boxes of image 0 first, stored channel-major (see `_warp`).
    """
    if len(boxes) != features.shape[0]:
        raise ValueError(f"got boxes for {len(boxes)} images but features for {features.shape[0]}")
    all_boxes, image_ids = _concatenate(boxes, features.device)
    levels = torch.zeros_like(image_ids)
    return _warp([features], (float(stride),), all_boxes, image_ids, levels, output_size)


def _concatenate(boxes: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """All images' boxes [R, 4] and the image of each [R] (int64)."""
    counts = torch.tensor([len(b) for b in boxes], device=device)
    image_ids = torch.repeat_interleave(torch.arange(len(boxes), device=device), counts)
    return torch.cat(list(boxes), dim=0), image_ids


def _warp(
    features: Sequence[Tensor],
    strides: Sequence[float],
    boxes: Tensor,
    image_ids: Tensor,
    levels: Tensor,
    output_size: int,
) -> Tensor:
    """Warp box r from level `levels[r]` of image `image_ids[r]`, all boxes in one `grid_sample` call.

    The levels of every image are tiled into one atlas (levels side by side, images stacked), so the output
    comes out in box order with no scatter back from per-level batches. Each sample's cell coordinates are
    clamped to its own level's outermost cell centres before they are shifted into the atlas, so bilinear
    sampling never mixes neighbouring tiles (at a clamped coordinate the neighbour's weight is 0). Zero rows
    and columns pad the atlas to powers of two: grid_sample's normalised coordinates then map every integer
    cell coordinate back exactly, so a sample on a cell centre takes the same one-sided derivative as it did
    in a per-level call, and rounding never reaches the atlas's edge.

    Args: features: per level [B, C, H_l, W_l]; strides: per level; boxes [R, 4]; image_ids, levels [R].
    Returns: [R, C, S, S], a transposed view of a contiguous [C, R, S, S] tensor: grid_sample writes that
    order, and pooling each (channel, RoI) plane needs no copy (`pool_warped`).
    """
    batch, channels = features[0].shape[:2]
    dtype, device = features[0].dtype, features[0].device
    # Box and grid coordinates stay in (at least) fp32 under mixed precision: between 1024 and 2048 px fp16
    # spaces values 1 px apart and bf16 8 px. The features are sampled in that precision too (autocast runs
    # grid_sample in fp32 as well) and the result is cast back to their dtype.
    coord_dtype = torch.promote_types(dtype, torch.float32)
    if boxes.shape[0] == 0:
        return features[0].new_zeros(channels, 0, output_size, output_size).transpose(0, 1)
    tile_height = max(f.shape[2] for f in features)
    atlas = torch.cat(
        [F.pad(f, (0, 0, 0, tile_height - f.shape[2])) for f in features], dim=3
    )  # [B, C, tile_height, sum W_l]
    atlas = atlas.transpose(0, 1).reshape(1, channels, batch * tile_height, atlas.shape[3])
    atlas_height, atlas_width = (1 << n.bit_length() for n in atlas.shape[2:])  # a power of two > n
    atlas = F.pad(atlas, (0, atlas_width - atlas.shape[3], 0, atlas_height - atlas.shape[2]))
    widths = torch.tensor([f.shape[3] for f in features], dtype=coord_dtype, device=device)
    heights = torch.tensor([f.shape[2] for f in features], dtype=coord_dtype, device=device)
    column_offsets = torch.cumsum(widths, dim=0) - widths
    level_strides = torch.tensor(list(strides), dtype=coord_dtype, device=device)
    stride, width, height = level_strides[levels, None], widths[levels, None], heights[levels, None]  # [R, 1]

    bins = torch.arange(output_size, dtype=coord_dtype, device=device)
    bin_centres = (bins + 0.5) / output_size
    x1, y1, x2, y2 = boxes.to(coord_dtype).unbind(dim=1)
    xs = x1[:, None] + bin_centres[None, :] * (x2 - x1)[:, None]  # [R, S] input pixels
    ys = y1[:, None] + bin_centres[None, :] * (y2 - y1)[:, None]
    # Cell j of a level spans [j, j + 1) * stride; its centre is coordinate j.
    columns = _clamp_to_centres(xs / stride - 0.5, width)
    rows = _clamp_to_centres(ys / stride - 0.5, height)
    columns = columns + column_offsets[levels, None]
    rows = rows + (image_ids * tile_height).to(coord_dtype)[:, None]
    # grid_sample with align_corners=False reads coordinate c of an n-cell axis at (c + 0.5) / n * 2 - 1.
    grid_x = (columns + 0.5) / atlas_width * 2 - 1
    grid_y = (rows + 0.5) / atlas_height * 2 - 1
    num_boxes = boxes.shape[0]
    grid = torch.stack(
        (
            grid_x[:, None, :].expand(num_boxes, output_size, output_size),
            grid_y[:, :, None].expand(num_boxes, output_size, output_size),
        ),
        dim=-1,
    )  # [R, S, S, 2], last dim (x, y)
    # Stacking the R grids vertically samples all boxes in one call without copying the atlas once per box.
    # grid_sample's CPU kernels (forward and backward) run one thread per batch item: the channels, split into
    # groups given as batch items sharing the grid, use every core without changing the output's storage.
    groups = math.gcd(channels, _CHANNEL_GROUPS)
    sampled = F.grid_sample(
        atlas.view(groups, channels // groups, atlas_height, atlas_width).to(coord_dtype),
        grid.reshape(1, num_boxes * output_size, output_size, 2).expand(groups, -1, -1, -1),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).to(dtype)  # [groups, C / groups, R * S, S]
    sampled = sampled.view(channels, num_boxes, output_size, output_size).transpose(0, 1)
    inside_x = ((xs >= 0) & (xs <= stride * width)).detach()  # [R, S]: within the level's extent
    inside_y = ((ys >= 0) & (ys <= stride * height)).detach()
    inside = inside_y[:, :, None] & inside_x[:, None, :]  # [R, S(y), S(x)]
    if not inside.all():  # boxes clipped to the image never leave the map: skip the product then
        sampled = sampled * inside[:, None].to(sampled.dtype)
    return sampled


def _clamp_to_centres(coordinates: Tensor, cells: Tensor) -> Tensor:
    """Cell coordinates clamped to [0, cells - 1]; as grid_sample's border padding, a coordinate on or beyond
    a border passes no gradient."""
    clamped = torch.minimum(torch.maximum(coordinates, torch.zeros_like(cells)), cells - 1)
    return torch.where((coordinates > 0) & (coordinates < cells - 1), coordinates, clamped.detach())


def max_pool_planes(planes: Tensor, output_size: int, *, return_indices: bool = False):
    """`adaptive_max_pool2d` of [N, C, S, S] to s x s (s = `output_size`); when s divides S its bins are
    fixed S / s windows, for which `max_pool2d` is the faster kernel (same maxima, same first-maximum
    indices)."""
    size = planes.shape[-1]
    if planes.shape[-2] == size and size % output_size == 0:
        return F.max_pool2d(planes, kernel_size=size // output_size, return_indices=return_indices)
    return F.adaptive_max_pool2d(planes, output_size, return_indices=return_indices)


def pool_warped(features: Tensor, output_size: int) -> Tensor:
    """Max-pool warped features [R, C, S, S] to [R, C, s, s] (s = `output_size`), as `adaptive_max_pool2d`.

    Pools the channel-major storage `RoIWarp` returns in place (a [R, C] pooling of that view would first copy
    it). Without autograd, fixed windows take their maxima with element-wise maxima of strided slices (CPU's
    max_pool2d kernel also computes argmax indices, 3-4x slower); with autograd each bin's gradient goes to
    its first maximum (`max_pool_planes`).
    """
    if features.shape[0] == 0:  # max pooling takes an empty batch, not an empty channel dimension
        return F.adaptive_max_pool2d(features, output_size)
    planes = features.transpose(0, 1)  # contiguous for RoIWarp's output
    size = features.shape[-1]
    needs_grad = torch.is_grad_enabled() and features.requires_grad
    if needs_grad or features.shape[-2] != size or size % output_size:
        return max_pool_planes(planes, output_size).transpose(0, 1)
    window = size // output_size
    rows = planes[:, :, 0::window]
    for offset in range(1, window):
        rows = torch.maximum(rows, planes[:, :, offset::window])
    pooled = rows[..., 0::window]
    for offset in range(1, window):
        pooled = torch.maximum(pooled, rows[..., offset::window])
    return pooled.transpose(0, 1)


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
        if len(boxes) != features[0].shape[0]:
            raise ValueError(f"got boxes for {len(boxes)} images but features for {features[0].shape[0]}")
        all_boxes, image_ids = _concatenate(boxes, features[0].device)
        levels = map_boxes_to_levels(all_boxes.detach(), num_levels=num_levels,
                                     finest_scale=self.finest_scale)
        return _warp(features[:num_levels], self.featmap_strides, all_boxes, image_ids, levels,
                     self.output_size)
