"""SeparableRoIAlign: mmcv's RoIAlign (average mode) with a dense separable CPU backward.

The reference is mmcv's own op: outputs must be equal bit for bit (the forward is torchvision's kernel) and
input gradients equal to float rounding, on RoIs that cross every border rule of the bilinear sampling.
"""

from __future__ import annotations

import pytest
import torch
from mmcv.ops import roi_align as mmcv_roi_align

from mnc_bench.models import roi_align as module
from mnc_bench.models.roi_align import SeparableRoIAlign


def random_case(seed: int, batch: int = 3, channels: int = 5, height: int = 13, width: int = 17,
                num_rois: int = 60, scale: float = 0.25,
                sort: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and RoIs (image index, x1, y1, x2, y2 in image pixels) that start before the image, end past
    it, include tiny and degenerate boxes and, unless ``sort``, come in random image order."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, height, width, generator=generator, dtype=torch.float64)
    image = torch.randint(0, batch, (num_rois,), generator=generator)
    if sort:
        image = image.sort().values
    size = torch.tensor([width, height], dtype=torch.float64) / scale
    start = torch.rand(num_rois, 2, generator=generator, dtype=torch.float64) * size * 1.2 - 0.15 * size
    extent = torch.rand(num_rois, 2, generator=generator, dtype=torch.float64) * size * 0.8
    extent[:5] = 0.0  # degenerate boxes
    extent[5:10] *= 0.02  # much smaller than a feature pixel
    rois = torch.cat([image[:, None].double(), start, start + extent], dim=1)
    return features, rois


def forward_backward(op, features: torch.Tensor, rois: torch.Tensor,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    features = features.detach().clone().requires_grad_(True)
    out = op(features, rois)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    out.backward(grad_out)
    return out.detach(), features.grad


@pytest.mark.parametrize(
    "output_size, sampling_ratio, aligned, sort, scale",
    [(7, 0, True, True, 0.25), (14, 0, True, True, 0.25), (7, 2, True, False, 0.125),
     (7, 0, False, False, 0.25), ((5, 3), 1, False, True, 0.5)])
def test_matches_mmcv_forward_exactly_and_backward_to_rounding(output_size, sampling_ratio, aligned, sort,
                                                                scale):
    features, rois = random_case(seed=sampling_ratio + 10 * aligned, sort=sort, scale=scale)
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    ours = SeparableRoIAlign(output_size, spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
    theirs = lambda f, r: mmcv_roi_align(f.float(), r.float(), size, scale, sampling_ratio, "avg", aligned)  # noqa: E731
    out_ours, grad_ours = forward_backward(lambda f, r: ours(f.float(), r.float()), features, rois, seed=1)
    out_theirs, grad_theirs = forward_backward(theirs, features, rois, seed=1)
    assert out_ours.shape == (rois.shape[0], features.shape[1], *size)
    assert torch.equal(out_ours, out_theirs)
    assert grad_theirs.abs().max() > 0.5  # the comparison below is not between zeros
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-5, atol=1e-5)


def test_backward_is_the_exact_adjoint_in_double_precision():
    """gradcheck: the separable backward is the derivative of the forward (float64, no mmcv rounding)."""
    features, rois = random_case(seed=3, batch=2, channels=2, height=6, width=7, num_rois=12, scale=0.5,
                                 sort=False)
    layer = SeparableRoIAlign(3, spatial_scale=0.5, sampling_ratio=0)
    features.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: layer(f, rois), (features,), eps=1e-6, atol=1e-6)


def test_no_rois_gives_an_empty_output_and_a_zero_gradient():
    features = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = SeparableRoIAlign(7, spatial_scale=0.25)(features, torch.zeros(0, 5))
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()
    assert features.grad is not None and not features.grad.any()


def test_large_maps_and_inference_use_torchvisions_op(monkeypatch):
    calls = []
    original = module._RoIAlignFunction.apply
    monkeypatch.setattr(module._RoIAlignFunction, "apply",
                        staticmethod(lambda *args: calls.append(args[0].shape) or original(*args)))
    layer = SeparableRoIAlign(7, spatial_scale=0.25)
    rois = torch.tensor([[0.0, 4.0, 4.0, 60.0, 60.0]])
    layer(torch.randn(1, 2, 16, 16, requires_grad=True), rois)
    layer(torch.randn(1, 2, 16, 16), rois)  # no gradient needed
    side = int(module.DENSE_BACKWARD_MAX_PIXELS ** 0.5) + 1
    layer(torch.randn(1, 2, side, side, requires_grad=True), rois)
    assert calls == [(1, 2, 16, 16)]


def test_max_pooling_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="pool_mode='max' is not implemented"):
        SeparableRoIAlign(7, pool_mode="max")


def test_shapes_configs_build_it_through_mmdets_roi_extractors():
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    from mnc_bench.config_loading import load_config

    for path in ["configs/mask_rcnn/mask_rcnn_shapes.py", "configs/panet/panet_shapes.py"]:
        with DefaultScope.overwrite_default_scope("mmdet"):
            roi_head = MODELS.build(load_config(path).model).roi_head
        for extractor in (roi_head.bbox_roi_extractor, roi_head.mask_roi_extractor):
            assert all(isinstance(layer, SeparableRoIAlign) for layer in extractor.roi_layers), path
