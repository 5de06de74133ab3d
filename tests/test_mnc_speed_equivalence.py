"""The optimised MNC paths give the outputs and gradients of the straightforward ones they replaced.

Each reference below is the earlier implementation, kept here verbatim in substance: RoI warping one
`grid_sample` call per (level, image) scattered into a zero canvas, and `adaptive_max_pool2d` / `max_pool2d`
on [R, C, S, S] tensors. The fused warp-and-pool (`RoIWarp.pooled` on CPU) is held to the same references, its
kernels run eagerly here (tests/conftest.py) and compiled in the slow test at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from mnc_bench.models.mnc import ClassStage, MaskStage, window_kernels
from mnc_bench.models.mnc.roi_features import (
    DenseRoIFeatures,
    PooledLinear,
    WindowedRoIFeatures,
    masked_max_pool,
    pool_warped,
)
from mnc_bench.models.mnc.roi_warp import RoIWarp, map_boxes_to_levels, warp_rois


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
    """The box path's 7 x 7 max of MaskStage's 14 x 14 maxima (what DenseRoIFeatures reuses when stage 2
    pooled first, as in the cascade) is the 7 x 7 max of the 28 x 28 features: outputs and gradients (random
    features: no ties between window maxima)."""
    torch.manual_seed(9)
    warped = torch.randn(4, 6, 28, 28, dtype=torch.float64).transpose(0, 1).requires_grad_()
    mask_logits = torch.randn(6, 28, 28, dtype=torch.float64, requires_grad=True)
    mask_stage = MaskStage(in_channels=4, warp_size=28, mask_size=28, hidden_dim=8).double()
    class_stage = ClassStage(in_channels=4, num_classes=2, pooled_size=7, fc_dim=8, num_fcs=1).double()

    def run(features):
        out = class_stage(features, mask_logits)
        total = out.cls_logits.sum() + out.seg_cls_logits.square().sum() + out.box_deltas.sin().sum()
        return [out.cls_logits, out.box_deltas, *torch.autograd.grad(total, (warped, mask_logits))]

    shared = DenseRoIFeatures(warped)
    assert mask_stage.pooled_size == 14 and shared.max_pool(14).shape == (6, 4, 14, 14)
    for got, expected in zip(run(shared), run(warped)):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def _pooled_reference(features, boxes, masks, strides, size, fine, coarse):
    warped = _reference_warp(features, boxes, strides, size, 4.0)
    return (F.adaptive_max_pool2d(warped, fine), F.adaptive_max_pool2d(warped, coarse),
            F.adaptive_max_pool2d(warped * masks, coarse))


def _pooled_fused(features, boxes, masks, strides, size, fine, coarse):
    pooled = RoIWarp(featmap_strides=strides, output_size=size, finest_scale=4.0).pooled(
        features, boxes, fine_size=fine, coarse_size=coarse)
    assert isinstance(pooled, WindowedRoIFeatures)
    return pooled.max_pool(fine), pooled.max_pool(coarse), pooled.masked_max_pool(masks, coarse)


def _pooled_outputs_and_gradients(function, features, boxes, masks, weights) -> list[Tensor]:
    outputs = function(features, boxes, masks)
    inputs = [*features, *boxes, masks]
    total = sum((output * weight).sum() for output, weight in zip(outputs, weights))
    gradients = torch.autograd.grad(total, inputs, allow_unused=True)
    return [*outputs, *(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gradients))]


@pytest.mark.parametrize("strides, counts, channels, size, fine, coarse", [
    ((4.0, 8.0, 16.0, 32.0), (9, 0, 14), 16, 28, 14, 7),  # the shapes configs' windows: 2 x 2 in 2 x 2
    ((4.0, 8.0), (5, 7), 3, 12, 4, 2),  # 3 x 3 windows in 2 x 2
    ((16.0,), (6,), 8, 8, 8, 2),  # fine pooling by 1 (no pooling), coarse by 4
])
def test_fused_warp_and_pool_equals_pooling_the_reference_warp(strides, counts, channels, size, fine, coarse):
    """Stage 2's and stage 3's poolings of the fused warp-and-pool, plain and masked, against the reference
    warp pooled by adaptive_max_pool2d: outputs, and gradients w.r.t. the features, the boxes (a third of them
    partly off the map) and the masks."""
    features, boxes = _inputs(strides, 64, counts, seed=12, channels=channels)
    generator = torch.Generator().manual_seed(13)
    rois = sum(counts)
    masks = torch.rand(rois, 1, size, size, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(rois, channels, side, side, generator=generator, dtype=torch.float64)
               for side in (fine, coarse, coarse)]
    _assert_fused_equals_reference(features, boxes, masks, weights, (strides, size, fine, coarse))


def test_fused_pooling_gives_a_tied_window_gradient_to_its_first_maximum():
    """ReLU features are 0 over whole regions, so many windows hold several equal maxima: as max_pool2d, the
    gradient goes to the first in row-major order (another element would send it to other feature cells)."""
    features, boxes = _inputs((4.0, 8.0), 64, (8, 8), seed=14, channels=4)
    features = [torch.relu(f - 0.8).detach().requires_grad_() for f in features]
    generator = torch.Generator().manual_seed(15)
    masks = torch.rand(16, 1, 28, 28, generator=generator, dtype=torch.float64).round().requires_grad_()
    weights = [torch.randn(16, 4, side, side, generator=generator, dtype=torch.float64)
               for side in (14, 7, 7)]
    args = ((4.0, 8.0), 28, 14, 7)
    with torch.no_grad():
        fine = _pooled_reference(features, boxes, masks, *args)[0]
    assert (fine == 0).float().mean() > 0.3  # many all-zero (tied) windows
    _assert_fused_equals_reference(features, boxes, masks, weights, args)


def _assert_fused_equals_reference(features, boxes, masks, weights, args) -> None:
    """The fused warp-and-pool's outputs and gradients equal the reference warp pooled by PyTorch's ops
    (float64, up to the order of sums)."""
    ours = _pooled_outputs_and_gradients(lambda f, b, m: _pooled_fused(f, b, m, *args), features, boxes,
                                         masks, weights)
    reference = _pooled_outputs_and_gradients(lambda f, b, m: _pooled_reference(f, b, m, *args), features,
                                              boxes, masks, weights)
    for got, expected in zip(ours, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_pooled_warp_falls_back_to_dense_pooling_when_the_windows_do_not_nest():
    features, boxes = _inputs((4.0, 8.0), 64, (3, 4), seed=16, channels=3)
    pooled = RoIWarp(featmap_strides=(4.0, 8.0), output_size=12, finest_scale=4.0).pooled(
        features, boxes, fine_size=6, coarse_size=4)
    assert isinstance(pooled, DenseRoIFeatures)
    reference = _reference_warp(features, boxes, (4.0, 8.0), 12, 4.0)
    torch.testing.assert_close(pooled.max_pool(4), F.adaptive_max_pool2d(reference, 4),
                               rtol=1e-12, atol=1e-12)


def test_pooled_linear_reads_channels_last_maps_as_their_flattening():
    """The fused path's channels-last maxima go through the fc layers without a copy, the weight's columns
    permuted instead: outputs and gradients of `linear(maps.flatten(1))`; at inference the permuted weight is
    kept, and follows an in-place update of the weight."""
    torch.manual_seed(19)
    linear = PooledLinear(4 * 3 * 3, 5).double()
    maps = torch.randn(6, 3, 3, 4, dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_()
    assert maps.is_contiguous(memory_format=torch.channels_last) and not maps.is_contiguous()
    weights = torch.randn(6, 5, dtype=torch.float64)

    def run(function):
        out = function(maps)
        return [out, *torch.autograd.grad((out * weights).sum(), (maps, linear.weight, linear.bias))]

    reference = lambda x: F.linear(x.flatten(1), linear.weight, linear.bias)  # noqa: E731
    for got, expected in zip(run(linear), run(reference)):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(linear(maps), reference(maps), rtol=1e-12, atol=1e-12)
        linear.weight.mul_(-2.0)  # an optimizer step between two evaluations
        torch.testing.assert_close(linear(maps), reference(maps), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_compiled_kernels_equal_the_eager_ones(monkeypatch):
    """The kernels as torch.compile builds them (what training runs) against the same functions run eagerly
    (what the tests above check against the references), in float32 at the shapes configs' sizes."""
    features, boxes = _inputs((4.0, 8.0, 16.0, 32.0), 128, (40, 30), seed=17, channels=16)
    features = [f.float().detach().requires_grad_() for f in features]
    boxes = [b.float().detach().requires_grad_() for b in boxes]
    generator = torch.Generator().manual_seed(18)
    masks = torch.rand(70, 1, 28, 28, generator=generator, requires_grad=True)
    weights = [torch.randn(70, 16, side, side, generator=generator) for side in (14, 7, 7)]
    args = ((4.0, 8.0, 16.0, 32.0), 28, 14, 7)
    results = {}
    monkeypatch.setattr(window_kernels, "_compiled", {})
    monkeypatch.setenv(window_kernels.COMPILE_ENV, "1")
    with FlopCounterMode(display=False):  # as the bench counts FLOPs: torch.compile cannot run under it
        _pooled_outputs_and_gradients(lambda f, b, m: _pooled_fused(f, b, m, *args), features, boxes, masks,
                                      weights)
    assert not window_kernels._compiled  # run eagerly, not given up on
    for compile_flag in ("1", "0"):
        monkeypatch.setenv(window_kernels.COMPILE_ENV, compile_flag)
        results[compile_flag] = _pooled_outputs_and_gradients(
            lambda f, b, m: _pooled_fused(f, b, m, *args), features, boxes, masks, weights)
    # every kernel compiled (a kernel that failed to compile is kept as itself, run eagerly)
    assert set(window_kernels._compiled) == set(window_kernels._DYNAMIC_DIMS)
    assert all(compiled is not kernel for kernel, compiled in window_kernels._compiled.items())
    # The compiled reductions add in another order: float32 sums of up to a few thousand terms (the feature
    # gradients) then differ by ~1e-5 relative; a wrong index or weight differs by O(1).
    for got, expected in zip(results["1"], results["0"], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
