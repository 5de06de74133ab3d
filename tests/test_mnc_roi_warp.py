"""Differentiable RoI warping: gradients w.r.t. features and boxes, conventions, level mapping."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from mnc_bench.models.mnc.roi_warp import RoIWarp, map_boxes_to_levels, warp_rois


def _gradcheck_boxes() -> torch.Tensor:
    # Stride 4 on a 5 x 6 map (20 x 24 px image). Coordinates are chosen so that no sample (bin centre) lands
    # on a feature-cell centre, where bilinear interpolation has a kink; two boxes stick out of the image.
    return torch.tensor(
        [
            [1.3, 2.1, 13.7, 11.9],
            [-6.3, -3.7, 9.1, 8.3],  # partly left of / above the image
            [15.1, 9.7, 29.3, 25.1],  # partly right of / below the image
        ],
        dtype=torch.float64,
    )


def test_gradcheck_features_and_boxes_single_image():
    torch.manual_seed(0)
    features = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    boxes = _gradcheck_boxes().requires_grad_()

    def warp(f: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return warp_rois(f, [b], stride=4.0, output_size=3)

    assert torch.autograd.gradcheck(warp, (features, boxes), eps=1e-6, atol=1e-5)


def test_gradcheck_two_images_and_fpn_levels():
    torch.manual_seed(1)
    fine = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)  # stride 4
    coarse = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)  # stride 8
    # finest_scale=8: the 6-px box reads level 0, the 17-px boxes level 1.
    small = torch.tensor([[2.3, 3.1, 8.1, 9.3]], dtype=torch.float64, requires_grad=True)
    large = torch.tensor([[1.3, -2.9, 18.1, 14.3], [5.1, 6.7, 22.3, 23.9]], dtype=torch.float64)
    large.requires_grad_()
    warp = RoIWarp(featmap_strides=[4, 8], output_size=2, finest_scale=8.0)

    def run(f0, f1, b0, b1):
        return warp([f0, f1], [b0, b1])

    assert torch.autograd.gradcheck(run, (fine, coarse, small, large), eps=1e-6, atol=1e-5)


def test_box_gradient_is_nonzero_and_feature_gradient_reaches_only_sampled_cells():
    features = torch.zeros(1, 1, 8, 8, requires_grad=True)
    boxes = torch.tensor([[4.3, 4.6, 12.2, 12.7]], requires_grad=True)
    with torch.no_grad():
        features += torch.arange(64.0).view(1, 1, 8, 8)  # a ramp: moving the box changes every sample
    warp_rois(features, [boxes], stride=2.0, output_size=4).sum().backward()
    assert boxes.grad.abs().min() > 0
    touched = features.grad[0, 0] != 0
    assert touched[2:7, 2:7].any() and not touched[:1].any() and not touched[:, :1].any()


def test_matches_roi_align_aligned_with_one_sample_per_bin_inside_the_image():
    torch.manual_seed(2)
    features = torch.randn(2, 3, 16, 20)
    boxes = [
        torch.tensor([[8.3, 9.1, 40.2, 50.7], [20.0, 12.0, 70.0, 44.0]]),
        torch.tensor([[4.0, 6.0, 30.0, 60.0]]),
    ]
    ours = warp_rois(features, boxes, stride=4.0, output_size=7)
    rois = torch.cat([torch.cat((torch.full((len(b), 1), float(i)), b), dim=1) for i, b in enumerate(boxes)])
    reference = roi_align(features, rois, output_size=7, spatial_scale=0.25, sampling_ratio=1, aligned=True)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_box_entirely_outside_reads_zeros_and_empty_image_is_fine():
    features = torch.randn(2, 4, 8, 8)
    outside = torch.tensor([[100.0, 100.0, 140.0, 130.0]])
    warped = warp_rois(features, [outside, torch.zeros(0, 4)], stride=4.0, output_size=5)
    assert warped.shape == (1, 4, 5, 5)
    assert torch.count_nonzero(warped) == 0


def test_samples_in_the_border_half_cell_read_the_border_value():
    """MNC-code's rule: inside the map's extent the coordinates clamp to the outermost cell centres (zero
    padding would fade the half cell along the border towards 0); outside it a sample reads 0."""
    features = torch.ones(1, 1, 4, 4)  # stride 4: a 16 x 16 px image
    whole_image = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    warped = warp_rois(features, [whole_image], stride=4.0, output_size=8)  # outer samples 1 px from the edge
    torch.testing.assert_close(warped, torch.ones(1, 1, 8, 8))
    # Columns 0-3 sample x = 2, 6, 10, 14 (inside), columns 4-7 x = 18, ... (outside the map).
    sticking_out = torch.tensor([[0.0, 0.0, 32.0, 16.0]])
    warped = warp_rois(features, [sticking_out], stride=4.0, output_size=8)[0, 0]
    assert torch.all(warped[:, :4] == 1) and torch.all(warped[:, 4:] == 0)


def test_a_clamped_sample_passes_no_gradient_to_its_coordinate():
    features = torch.arange(16.0).view(1, 1, 4, 4)
    box = torch.tensor([[14.5, 5.0, 15.5, 13.0]], requires_grad=True)  # x samples within the right half cell
    warp_rois(features, [box], stride=4.0, output_size=2).sum().backward()
    assert box.grad[0, 0] == 0 and box.grad[0, 2] == 0 and box.grad[0, 1:4:2].abs().sum() > 0


def test_level_mapping_follows_mmdet_single_roi_extractor():
    sides = torch.tensor([50.0, 112.0, 300.0, 1000.0])
    boxes = torch.stack((torch.zeros(4), torch.zeros(4), sides, sides), dim=1)
    assert map_boxes_to_levels(boxes, num_levels=4, finest_scale=56).tolist() == [0, 1, 2, 3]


def test_multi_level_output_equals_per_level_warp():
    torch.manual_seed(3)
    features = [torch.randn(2, 3, 32 // s, 32 // s) for s in (1, 2, 4)]
    boxes = [
        torch.tensor([[1.0, 2.0, 5.0, 6.0], [0.0, 0.0, 30.0, 30.0]]),
        torch.tensor([[3.0, 3.0, 15.0, 14.0]]),
    ]
    warp = RoIWarp(featmap_strides=[1, 2, 4], output_size=4, finest_scale=4.0)
    out = warp(features, boxes)
    levels = map_boxes_to_levels(torch.cat(boxes), num_levels=3, finest_scale=4.0).tolist()
    assert levels == [0, 2, 1]  # every level is exercised
    expected = [
        warp_rois(features[level], [box[None] if i == image else box.new_zeros(0, 4) for i in range(2)],
                  stride=(1, 2, 4)[level], output_size=4)[0]
        for level, (image, box) in zip(levels, [(0, boxes[0][0]), (0, boxes[0][1]), (1, boxes[1][0])])
    ]
    torch.testing.assert_close(out, torch.stack(expected))


@pytest.mark.parametrize("kwargs, field", [
    (dict(featmap_strides=[]), "featmap_strides"),
    (dict(featmap_strides=[16], output_size=1), "warp_size"),
    (dict(featmap_strides=[16], finest_scale=0), "finest_scale"),
])
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RoIWarp(**kwargs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_features_keep_full_precision_box_and_grid_coordinates(dtype):
    """Under mixed precision the features come in fp16/bf16, where coordinates between 1024 and 2048 px are
    1 px (fp16) or 8 px (bf16) apart: the warp must sample where the fp32 boxes say, as it does in fp32."""
    torch.manual_seed(0)
    features = torch.randn(1, 4, 100, 100).to(dtype)  # stride 16: a 1600 px image
    boxes = torch.tensor([[1030.3, 1101.7, 1517.9, 1399.1], [1203.6, 1041.2, 1290.4, 1150.8]],
                         requires_grad=True)
    reference_boxes = boxes.detach().clone().requires_grad_()
    warp = RoIWarp(featmap_strides=[16], output_size=7)
    out = warp([features], [boxes])
    reference = warp([features.float()], [reference_boxes])  # the same features, sampled in fp32
    assert out.dtype == dtype
    assert torch.equal(out, reference.to(dtype))
    out.float().sum().backward()
    reference.sum().backward()
    torch.testing.assert_close(boxes.grad, reference_boxes.grad)
