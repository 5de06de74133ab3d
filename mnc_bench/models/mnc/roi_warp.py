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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnc_bench.models.mnc.config import MNCConfig, ParameterError
from mnc_bench.models.mnc.roi_features import DenseRoIFeatures, RoIFeatures, WindowedRoIFeatures

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
    return _warp(_WarpInputs([features], (float(stride),), all_boxes, image_ids, torch.zeros_like(image_ids)),
                 output_size)


def _concatenate(boxes: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """All images' boxes [R, 4] and the image of each [R] (int64)."""
    counts = torch.tensor([len(b) for b in boxes], device=device)
    image_ids = torch.repeat_interleave(torch.arange(len(boxes), device=device), counts)
    return torch.cat(list(boxes), dim=0), image_ids


@dataclass
class _WarpInputs:
    """What a warp reads: box r is sampled from level `levels[r]` of image `image_ids[r]`."""

    features: Sequence[Tensor]  # per level [B, C, H_l, W_l]
    strides: Sequence[float]  # per level, input pixels per feature cell
    boxes: Tensor  # [R, 4] (x1, y1, x2, y2) in input pixels
    image_ids: Tensor  # [R] int64
    levels: Tensor  # [R] int64


@dataclass
class _SamplingGrid:
    """Where `_warp` samples: the atlas and, per box r and bin j, the atlas cell coordinates of the
    samples."""

    atlas: Tensor  # [G, C / G, H, W]: every level of every image, channels split into G groups (see _warp)
    columns: Tensor  # [R, S] the atlas column of bin column j's samples (cell j's centre is coordinate j)
    rows: Tensor  # [R, S] the atlas row of bin row i's samples
    inside_x: Tensor  # [R, S] bool: column j lies on the box's level's map
    inside_y: Tensor  # [R, S] bool

    def normalised(self) -> tuple[Tensor, Tensor]:
        """grid_sample's normalised x [R, S] and y [R, S] of the samples: with align_corners=False it reads
        coordinate c of an n-cell axis at (c + 0.5) / n * 2 - 1."""
        height, width = self.atlas.shape[2:]
        return (self.columns + 0.5) / width * 2 - 1, (self.rows + 0.5) / height * 2 - 1


def _sampling_grid(inputs: _WarpInputs, output_size: int) -> _SamplingGrid:
    """The sampling of box r from level `levels[r]` of image `image_ids[r]`, all boxes in one atlas.

    The levels of every image are tiled into one atlas (levels side by side, images stacked), so one
    `grid_sample` call samples every box, in box order, with no scatter back from per-level batches. Each
    sample's cell coordinates are clamped to its own level's outermost cell centres before they are shifted
    into the atlas, so bilinear sampling never mixes neighbouring tiles (at a clamped coordinate the
    neighbour's weight is 0). Zero rows and columns pad the atlas to powers of two: grid_sample's normalised
    coordinates then map every integer cell coordinate back exactly, so a sample on a cell centre takes the
    same one-sided derivative as it did in a per-level call, and rounding never reaches the atlas's edge.
    grid_sample's CPU kernels (forward and backward) run one thread per batch item: the channels, split into
    groups given as batch items sharing the grid, use every core without changing the output's storage.

    Needs R > 0.
    """
    features, strides, boxes, image_ids, levels = (
        inputs.features, inputs.strides, inputs.boxes, inputs.image_ids, inputs.levels)
    batch, channels = features[0].shape[:2]
    dtype, device = features[0].dtype, features[0].device
    # Box and grid coordinates stay in (at least) fp32 under mixed precision: between 1024 and 2048 px fp16
    # spaces values 1 px apart and bf16 8 px. The features are sampled in that precision too (autocast runs
    # grid_sample in fp32 as well) and the result is cast back to their dtype.
    coord_dtype = torch.promote_types(dtype, torch.float32)
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
    groups = math.gcd(channels, _CHANNEL_GROUPS)
    return _SamplingGrid(
        atlas=atlas.view(groups, channels // groups, atlas_height, atlas_width),
        columns=columns,
        rows=rows,
        inside_x=((xs >= 0) & (xs <= stride * width)).detach(),  # within the level's extent
        inside_y=((ys >= 0) & (ys <= stride * height)).detach(),
    )


def _warp(inputs: _WarpInputs, output_size: int) -> Tensor:
    """Warp box r from level `levels[r]` of image `image_ids[r]`, all boxes in one `grid_sample` call
    (`_sampling_grid`).

    Returns: [R, C, S, S], a transposed view of a contiguous [C, R, S, S] tensor: grid_sample writes that
    order, and pooling each (channel, RoI) plane needs no copy (`pool_warped`).
    """
    channels = inputs.features[0].shape[1]
    num_boxes = inputs.boxes.shape[0]
    if num_boxes == 0:
        return inputs.features[0].new_zeros(channels, 0, output_size, output_size).transpose(0, 1)
    sampling = _sampling_grid(inputs, output_size)
    grid_x, grid_y = sampling.normalised()
    grid = torch.stack(
        (
            grid_x[:, None, :].expand(num_boxes, output_size, output_size),
            grid_y[:, :, None].expand(num_boxes, output_size, output_size),
        ),
        dim=-1,
    )  # [R, S, S, 2], last dim (x, y)
    # Stacking the R grids vertically samples all boxes in one call without copying the atlas once per box.
    atlas = sampling.atlas
    sampled = F.grid_sample(
        atlas.to(grid.dtype),
        grid.reshape(1, num_boxes * output_size, output_size, 2).expand(atlas.shape[0], -1, -1, -1),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).to(atlas.dtype)  # [groups, C / groups, R * S, S]
    sampled = sampled.view(channels, num_boxes, output_size, output_size).transpose(0, 1)
    inside = sampling.inside_y[:, :, None] & sampling.inside_x[:, None, :]  # [R, S(y), S(x)]
    if not inside.all():  # boxes clipped to the image never leave the map: skip the product then
        sampled = sampled * inside[:, None].to(sampled.dtype)
    return sampled


def _warp_windowed(inputs: _WarpInputs, output_size: int, k: int, m: int) -> WindowedRoIFeatures:
    """`_warp`'s samples, pooled as they are sampled (by k for stage 2, by k * m for stage 3) from a
    channels-last copy of the atlas, without storing them (`WindowedRoIFeatures`). Needs R > 0 and S =
    `output_size` divisible by k * m."""
    sampling = _sampling_grid(inputs, output_size)
    channels, height, width = sampling.atlas.shape[0] * sampling.atlas.shape[1], *sampling.atlas.shape[2:]
    atlas = sampling.atlas.reshape(channels, height * width).t().contiguous()  # [H * W, C]
    dtype = atlas.dtype
    return WindowedRoIFeatures(atlas, sampling.rows, sampling.columns, sampling.inside_y.to(dtype),
                               sampling.inside_x.to(dtype), width, k, m)


def _clamp_to_centres(coordinates: Tensor, cells: Tensor) -> Tensor:
    """Cell coordinates clamped to [0, cells - 1]; as grid_sample's border padding, a coordinate on or beyond
    a border passes no gradient."""
    clamped = torch.minimum(torch.maximum(coordinates, torch.zeros_like(cells)), cells - 1)
    return torch.where((coordinates > 0) & (coordinates < cells - 1), coordinates, clamped.detach())


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
        return _warp(self._inputs(features, boxes), self.output_size)

    def pooled(self, features: Sequence[Tensor], boxes: Sequence[Tensor], *, fine_size: int, coarse_size: int
               ) -> RoIFeatures:
        """The warped features as the stages read them: max-pooled to `fine_size` (stage 2) and to
        `coarse_size` (stage 3, also masked). Args as `forward`'s.

        On CPU, when the pooling windows nest (S = fine_size * k, fine_size = coarse_size * m), the fused
        warp-and-pool (`WindowedRoIFeatures`) samples the points window by window and pools them as they are
        sampled; otherwise the warped features are pooled by PyTorch's ops (`DenseRoIFeatures`). Both give the
        same outputs and gradients up to the order of floating-point sums.
        """
        size = self.output_size
        inputs = self._inputs(features, boxes)
        nested = size % fine_size == 0 and fine_size % coarse_size == 0
        if nested and inputs.boxes.shape[0] > 0 and inputs.features[0].device.type == "cpu":
            return _warp_windowed(inputs, size, size // fine_size, fine_size // coarse_size)
        return DenseRoIFeatures(_warp(inputs, size))

    def _inputs(self, features: Sequence[Tensor], boxes: Sequence[Tensor]) -> _WarpInputs:
        """The levels read, their strides, and all images' boxes with the image and level of each."""
        num_levels = len(self.featmap_strides)
        if len(features) < num_levels:
            raise ValueError(f"expected {num_levels} feature levels, got {len(features)}")
        if len(boxes) != features[0].shape[0]:
            raise ValueError(f"got boxes for {len(boxes)} images but features for {features[0].shape[0]}")
        all_boxes, image_ids = _concatenate(boxes, features[0].device)
        levels = map_boxes_to_levels(all_boxes.detach(), num_levels=num_levels,
                                     finest_scale=self.finest_scale)
        return _WarpInputs(features[:num_levels], self.featmap_strides, all_boxes, image_ids, levels)
