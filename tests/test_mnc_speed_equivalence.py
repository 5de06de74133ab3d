"""The optimised MNC paths give the outputs and gradients of the straightforward ones they replaced.

Each reference below is the earlier implementation, kept here verbatim in substance: RoI warping one
`grid_sample` call per (level, image) scattered into a zero canvas, and `adaptive_max_pool2d` / `max_pool2d`
on [R, C, S, S] tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mnc_bench.models.mnc import ClassStage, MaskStage
from mnc_bench.models.mnc.class_stage import masked_max_pool
from mnc_bench.models.mnc.roi_warp import RoIWarp, map_boxes_to_levels, pool_warped, warp_rois


def _reference_warp_level(features: Tensor, boxes: Sequence[Tensor], stride: float, size: int) -> Tensor:
    channels, height, width = features.shape[1:]
    bin_centres = (torch.arange(size, dtype=features.dtype) + 0.5) / size
    warped = []
    for image, image_boxes in enumerate(boxes):
        count = image_boxes.shape[0]
        if count == 0:
            warped.append(features.new_zeros(0, channels, size, size))
            continue
        x1, y1, x2, y2 = image_boxes.to(features.dtype).unbind(dim=1)
        grid_x = (x1[:, None] + bin_centres * (x2 - x1)[:, None]) / (stride * width) * 2 - 1
        grid_y = (y1[:, None] + bin_centres * (y2 - y1)[:, None]) / (stride * height) * 2 - 1
        grid = torch.stack((grid_x[:, None, :].expand(count, size, size),
                            grid_y[:, :, None].expand(count, size, size)), dim=-1)
        sampled = F.grid_sample(features[image : image + 1], grid.reshape(1, count * size, size, 2),
                                mode="bilinear", padding_mode="border", align_corners=False)
        sampled = sampled.reshape(channels, count, size, size).transpose(0, 1)
        inside = (((grid_y >= -1) & (grid_y <= 1))[:, :, None] & ((grid_x >= -1) & (grid_x <= 1))[:, None, :])
        warped.append(sampled * inside[:, None].to(sampled.dtype))
    return torch.cat(warped, dim=0)


def _reference_warp(features: Sequence[Tensor], boxes: Sequence[Tensor], strides: Sequence[float], size: int,
                    finest_scale: float) -> Tensor:
    all_boxes = torch.cat(list(boxes))
    image_ids = torch.cat([torch.full((len(b),), i) for i, b in enumerate(boxes)])
    levels = map_boxes_to_levels(all_boxes.detach(), num_levels=len(strides), finest_scale=finest_scale)
    warped = features[0].new_zeros(all_boxes.shape[0], features[0].shape[1], size, size)
    for level, (level_features, stride) in enumerate(zip(features, strides)):
        selected = (levels == level).nonzero().squeeze(1)
        if selected.numel() == 0:
            continue
        per_image = [all_boxes[selected[image_ids[selected] == i]] for i in range(len(boxes))]
        order = torch.argsort(image_ids[selected], stable=True)
        warped[selected[order]] = _reference_warp_level(level_features, per_image, stride, size)
    return warped


def _boxes(generator: torch.Generator, count: int, image_size: int) -> Tensor:
    # Sizes from a few pixels to beyond the image, so every level is used; a third stick out of the map.
    centres = (torch.rand(count, 2, generator=generator, dtype=torch.float64) * image_size * 1.2
               - 0.1 * image_size)
    sides = torch.rand(count, 2, generator=generator, dtype=torch.float64) * image_size * 0.9 + 2.0
    return torch.cat((centres - sides / 2, centres + sides / 2), dim=1)


def _inputs(strides: Sequence[float], image_size: int, counts: Sequence[int], seed: int, channels: int = 3):
    generator = torch.Generator().manual_seed(seed)
    features = [torch.randn(len(counts), channels, image_size // int(s), image_size // int(s),
                            generator=generator, dtype=torch.float64, requires_grad=True) for s in strides]
    boxes = [_boxes(generator, count, image_size).requires_grad_() for count in counts]
    return features, boxes


def _outputs_and_gradients(function, features, boxes, weights: Tensor) -> list[Tensor]:
    output = function(features, boxes)
    inputs = [*features, *boxes]
    # unread levels: None
    gradients = torch.autograd.grad((output * weights).sum(), inputs, allow_unused=True)
    return [output, *(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gradients))]


@pytest.mark.parametrize("strides, counts, channels", [
    ((4.0, 8.0, 16.0, 32.0), (9, 0, 14), 16),  # FPN, an image without boxes in the middle; 8 channel groups
    ((16.0,), (5, 7), 3),  # C4: one level; one channel group
])
def test_roi_warp_equals_per_level_canvas_reference(strides, counts, channels):
    features, boxes = _inputs(strides, 64, counts, seed=0, channels=channels)
    warp = RoIWarp(featmap_strides=strides, output_size=6, finest_scale=4.0)
    levels = map_boxes_to_levels(torch.cat(boxes).detach(), num_levels=len(strides), finest_scale=4.0)
    assert len(strides) == 1 or len(set(levels.tolist())) == len(strides)  # every level is exercised
    weights = torch.randn(sum(counts), channels, 6, 6, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)
    ours = _outputs_and_gradients(warp, features, boxes, weights)
    reference = _outputs_and_gradients(
        lambda f, b: _reference_warp(f, b, strides, 6, 4.0), features, boxes, weights)
    for got, expected in zip(ours, reference):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_roi_warp_box_gradient_on_cell_centres_and_borders_equals_reference():
    """Boxes spanning a 128 px image put samples exactly on cell centres and on the outermost ones (stride 32,
    4 x 4 map, 28 x 28 grid: bins 3, 10, 17 and 24), where the box gradient is one-sided or zero: the atlas
    must take the same side as the per-level call (the same derivative, not a close one)."""
    features, _ = _inputs((4.0, 8.0, 16.0, 32.0), 128, (2, 2), seed=10, channels=8)
    spans = [[0.0, 0.0, 128.0, 128.0], [19.4, 0.0, 128.0, 128.0], [0.0, 11.3, 128.0, 128.0]]
    boxes = [torch.tensor(spans, dtype=torch.float64).requires_grad_(),
             torch.tensor(spans[::-1], dtype=torch.float64).requires_grad_()]
    warp = RoIWarp(featmap_strides=(4.0, 8.0, 16.0, 32.0), output_size=28, finest_scale=4.0)
    weights = torch.randn(6, 8, 28, 28, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    ours = _outputs_and_gradients(warp, features, boxes, weights)
    reference = _outputs_and_gradients(
        lambda f, b: _reference_warp(f, b, (4.0, 8.0, 16.0, 32.0), 28, 4.0), features, boxes, weights)
    for got, expected in zip(ours, reference):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_single_level_warp_rois_equals_reference():
    features, boxes = _inputs((8.0,), 48, (4, 6), seed=2)
    weights = torch.randn(10, 3, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours = _outputs_and_gradients(lambda f, b: warp_rois(f[0], b, stride=8.0, output_size=5),
                                  features, boxes, weights)
    reference = _outputs_and_gradients(lambda f, b: _reference_warp_level(f[0], b, 8.0, 5),
                                       features, boxes, weights)
    for got, expected in zip(ours, reference):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("size, pooled", [(28, 14), (28, 7), (12, 5)])  # fixed windows, and adaptive ones
@pytest.mark.parametrize("channel_major", [True, False])
def test_pool_warped_equals_adaptive_max_pool(size, pooled, channel_major):
    generator = torch.Generator().manual_seed(4)
    storage = torch.randn(3, 5, size, size, generator=generator)  # [C, R, S, S] as RoIWarp stores it
    features = (storage.transpose(0, 1) if channel_major else storage.transpose(0, 1).contiguous())
    features.requires_grad_()
    weights = torch.randn(5, 3, pooled, pooled, generator=generator)
    reference = F.adaptive_max_pool2d(features, pooled)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), features)
    ours = pool_warped(features, pooled)
    (grad,) = torch.autograd.grad((ours * weights).sum(), features)
    assert torch.equal(ours, reference) and torch.equal(grad, reference_grad)


def test_stages_on_warped_features_equal_their_reference_formulas():
    """MaskStage and ClassStage on RoIWarp's channel-major output give what the plain formulas give on a
    contiguous copy (max_pool2d by 2 for masks, adaptive max pooling for classification)."""
    torch.manual_seed(5)
    features, boxes = _inputs((4.0, 8.0), 64, (6, 4), seed=6)
    warped = RoIWarp(featmap_strides=(4.0, 8.0), output_size=8, finest_scale=4.0)(
        [f.float() for f in features], [b.float() for b in boxes])
    assert warped.transpose(0, 1).is_contiguous()
    mask_stage = MaskStage(in_channels=3, warp_size=8, mask_size=8, hidden_dim=16)
    class_stage = ClassStage(in_channels=3, num_classes=2, pooled_size=2, fc_dim=16, num_fcs=1)
    plain = warped.detach().contiguous()
    torch.testing.assert_close(
        mask_stage(warped),
        mask_stage.predictor(F.relu(mask_stage.hidden(F.max_pool2d(plain, 2).flatten(1)))).view(-1, 8, 8))
    mask_logits = mask_stage(warped)
    out = class_stage(warped, mask_logits)
    masked = F.adaptive_max_pool2d(plain * torch.sigmoid(mask_logits)[:, None], 2).flatten(1)
    joint = torch.cat((class_stage.mask_path(masked),
                       class_stage.box_path(F.adaptive_max_pool2d(plain, 2).flatten(1))), dim=1)
    torch.testing.assert_close(out.seg_cls_logits, class_stage.seg_classifier(joint))
    torch.testing.assert_close(out.box_deltas, class_stage.box_regressor(joint).view(-1, 2, 4))


@pytest.mark.parametrize("size, pooled", [(28, 14), (28, 7), (12, 4)])
def test_pool_warped_without_autograd_equals_adaptive_max_pool(size, pooled):
    storage = torch.randn(3, 5, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = pool_warped(storage.transpose(0, 1), pooled)
    assert torch.equal(ours, F.adaptive_max_pool2d(storage.transpose(0, 1).contiguous(), pooled))


@pytest.mark.parametrize("size, pooled", [(28, 7), (12, 5)])  # fixed windows, and overlapping adaptive ones
@pytest.mark.parametrize("channel_major", [True, False])
def test_masked_max_pool_equals_pooling_the_product(size, pooled, channel_major):
    generator = torch.Generator().manual_seed(8)
    storage = torch.randn(4, 6, size, size, generator=generator, dtype=torch.float64)
    features = storage.transpose(0, 1) if channel_major else storage.transpose(0, 1).contiguous()
    features.requires_grad_()
    masks = torch.rand(6, 1, size, size, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 4, pooled, pooled, generator=generator, dtype=torch.float64)
    reference = F.adaptive_max_pool2d(features * masks, pooled)
    reference_grads = torch.autograd.grad((reference * weights).sum(), (features, masks))
    ours = masked_max_pool(features, masks, pooled)
    grads = torch.autograd.grad((ours * weights).sum(), (features, masks))
    assert torch.equal(ours, reference)
    for got, expected in zip(grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert torch.equal(masked_max_pool(features, masks, pooled), reference)


def test_class_stage_pooling_the_mask_stage_pooled_features_equals_pooling_the_warped_ones():
    """The box path's 7 x 7 max of MaskStage's 14 x 14 maxima (the cascade's path) is the 7 x 7 max of the
    28 x 28 features: outputs and gradients (random features: no ties between window maxima)."""
    torch.manual_seed(9)
    warped = torch.randn(4, 6, 28, 28, dtype=torch.float64).transpose(0, 1).requires_grad_()
    mask_logits = torch.randn(6, 28, 28, dtype=torch.float64, requires_grad=True)
    mask_stage = MaskStage(in_channels=4, warp_size=28, mask_size=28, hidden_dim=8).double()
    class_stage = ClassStage(in_channels=4, num_classes=2, pooled_size=7, fc_dim=8, num_fcs=1).double()
    pooled = mask_stage.pool(warped)
    assert pooled.shape == (6, 4, 14, 14)

    def run(**kwargs):
        out = class_stage(warped, mask_logits, **kwargs)
        total = out.cls_logits.sum() + out.seg_cls_logits.square().sum() + out.box_deltas.sin().sum()
        return [out.cls_logits, out.box_deltas, *torch.autograd.grad(total, (warped, mask_logits))]

    for got, expected in zip(run(pooled_features=pooled), run()):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
