"""GPU tier, torch-only half: MNC's own modules on CUDA against the CPU, on fixed inputs, forward and backward
(the box gradient included), and every proposal mode. Needs torch with CUDA only (no mmcv, mmdet or
pycocotools): ``python -m pytest -m gpu tests/test_gpu_mnc.py`` with the repository on PYTHONPATH.

Both devices see the same inputs and weights; RoI sampling takes every candidate (its random order is the one
thing the devices draw differently, and the losses are order-free sums), so the outputs agree to float32
rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch

from mnc_bench.models.mnc import MNCPostProcessor, ProposalControl, RoISampling, RoIWarp
from mnc_bench.models.mnc.targets import InstanceTargets

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _full_float32_precision():
    # cuDNN convolutions use TF32 by default on Ampere and later (about 1e-3 relative error): the comparisons
    # with the CPU are at float32 rounding.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
ALL_CANDIDATES = RoISampling(num_rois=4096, fg_fraction=1.0)  # every candidate sampled, on either device
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _on(device: torch.device, proposals: list[torch.Tensor], targets: list[InstanceTargets]):
    moved = [p.detach().to(device).requires_grad_() for p in proposals]
    return moved, [InstanceTargets(boxes=t.boxes.to(device), labels=t.labels.to(device),
                                   masks=t.masks.to(device)) for t in targets]


def _twins(tiny_mnc, num_stages: int, labels: str):
    """(backbone, cascade) on the CPU and identical copies on CUDA."""
    torch.manual_seed(0)
    backbone = tiny_mnc.TinyBackbone()
    cascade = tiny_mnc.make_cascade(num_stages, labels=labels, box_grad_clip=1 / 512)
    cascade.sampling = ALL_CANDIDATES
    return (backbone, cascade), (copy.deepcopy(backbone).to(CUDA), copy.deepcopy(cascade).to(CUDA))


def test_roi_warp_matches_the_cpu_forward_and_backward_with_the_box_gradient():
    torch.manual_seed(0)
    features = [torch.randn(2, 8, 16, 16), torch.randn(2, 8, 8, 8)]
    boxes = [torch.tensor([[3.3, 4.1, 40.7, 30.2], [-6.0, 10.5, 20.0, 70.0]]),  # the second leaves the map
             torch.tensor([[10.2, 12.9, 60.1, 33.3]])]
    warp = RoIWarp(featmap_strides=[4, 8], output_size=7, finest_scale=16.0)
    outputs, gradients = [], []
    for device in (torch.device("cpu"), CUDA):
        f = [level.to(device).requires_grad_() for level in features]
        b = [box.to(device).requires_grad_() for box in boxes]
        out = warp(f, b)
        (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum().backward()
        outputs.append(out.detach().cpu())
        gradients.append([t.grad.cpu() for t in (*f, *b)])
    torch.testing.assert_close(outputs[1], outputs[0], **TOLERANCE)
    for cuda_grad, cpu_grad in zip(gradients[1], gradients[0]):
        torch.testing.assert_close(cuda_grad, cpu_grad, **TOLERANCE)
    assert gradients[0][-1].abs().sum() > 0  # the box gradient is compared, not zero on both


@pytest.mark.parametrize("num_stages,labels", [(3, "box"), (5, "both")])
def test_cascade_losses_and_gradients_match_the_cpu(num_stages, labels, tiny_mnc):
    images, proposals, targets = tiny_mnc.make_batch()
    sizes = [(64, 64)] * len(targets)
    results = []
    twins = _twins(tiny_mnc, num_stages, labels)
    for device, (backbone, cascade) in zip((torch.device("cpu"), CUDA), twins):
        device_proposals, device_targets = _on(device, proposals, targets)
        losses = cascade.loss(backbone(images.to(device)), device_proposals, device_targets, sizes)
        sum(losses.values()).backward()
        results.append(({name: value.item() for name, value in losses.items()},
                        [p.grad.cpu() for p in device_proposals],
                        {name: p.grad.cpu() for name, p in cascade.named_parameters() if p.grad is not None}))
    (cpu_losses, cpu_box_grads, cpu_grads), (cuda_losses, cuda_box_grads, cuda_grads) = results
    assert cuda_losses.keys() == cpu_losses.keys()
    for name in cpu_losses:
        assert cuda_losses[name] == pytest.approx(cpu_losses[name], rel=1e-4, abs=1e-6), name
    for cuda_grad, cpu_grad in zip(cuda_box_grads, cpu_box_grads):  # the end-to-end box gradient
        torch.testing.assert_close(cuda_grad, cpu_grad, **TOLERANCE)
    assert any(grad.abs().sum() > 0 for grad in cpu_box_grads)
    assert cuda_grads.keys() == cpu_grads.keys()
    for name in cpu_grads:
        torch.testing.assert_close(cuda_grads[name], cpu_grads[name], **TOLERANCE, msg=name)


def test_predict_and_postprocessing_match_the_cpu(tiny_mnc):
    images, proposals, targets = tiny_mnc.make_batch()
    sizes = [(64, 64)] * len(targets)
    detections = []
    for device, (backbone, cascade) in zip((torch.device("cpu"), CUDA), _twins(tiny_mnc, 5, "both")):
        with torch.no_grad():
            device_proposals = [p.detach().to(device) for p in proposals]
            outputs = cascade.predict(backbone(images.to(device)), device_proposals, sizes)
            found = MNCPostProcessor(score_thr=0.0, mask_voting=True)(outputs[0], image_size=(64, 64))
        detections.append(found)
    cpu, cuda = detections
    assert cuda.masks.device.type == CUDA.type and len(cuda.scores) == len(cpu.scores) > 0
    torch.testing.assert_close(cuda.scores.cpu(), cpu.scores, **TOLERANCE)
    torch.testing.assert_close(cuda.boxes.cpu(), cpu.boxes, **TOLERANCE)
    assert torch.equal(cuda.labels.cpu(), cpu.labels)
    # pasting thresholds can flip a border pixel
    assert (cuda.masks.cpu() == cpu.masks).float().mean() > 0.999


@pytest.mark.parametrize("settings", [dict(mode="rpn", jitter=0.1, max_proposals=8),
                                      dict(mode="oracle", oracle_iou=0.7, oracle_per_gt=5),
                                      dict(mode="random", num_random=50, max_proposals=20)],
                         ids=["rpn+jitter+cap", "oracle", "random"])
def test_every_proposal_mode_draws_the_same_boxes_on_cuda(settings, tiny_mnc):
    _, proposals, targets = tiny_mnc.make_batch()
    sizes = [(64, 64)] * len(targets)
    cpu, cuda = (ProposalControl(**settings, seed=3)(device_proposals, image_sizes=sizes, training=True,
                                                     gt_boxes=[t.boxes for t in device_targets])
                 for device_proposals, device_targets in (_on(device, proposals, targets)
                                                          for device in (torch.device("cpu"), CUDA)))
    for cuda_boxes, cpu_boxes in zip(cuda, cpu, strict=True):
        assert cuda_boxes.device.type == CUDA.type
        torch.testing.assert_close(cuda_boxes.detach().cpu(), cpu_boxes.detach(), **TOLERANCE)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_the_warp_under_autocast_samples_at_fp32_coordinates(dtype):
    torch.manual_seed(0)
    features = torch.randn(1, 8, 100, 100, device=CUDA)
    boxes = torch.tensor([[1030.3, 1101.7, 1517.9, 1399.1]], device=CUDA)
    warp = RoIWarp(featmap_strides=[16], output_size=7)
    reference = warp([features], [boxes])
    with torch.autocast("cuda", dtype=dtype):
        mixed = warp([features.to(dtype)], [boxes])
    torch.testing.assert_close(mixed.float(), reference, rtol=2e-2, atol=2e-2)


def test_mask_iou_linking_of_cuda_masks_matches_the_cpu():
    from mnc_bench.models.linking import MaskIoULinker

    torch.manual_seed(0)
    frames = [torch.rand(n, 24, 24) > 0.5 for n in (3, 2, 4)]  # instances come and go
    tracks = {}
    for device in ("cpu", CUDA):
        linker = MaskIoULinker()
        tracks[str(device)] = [linker.step(masks.to(device)).cpu().tolist() for masks in frames]
    assert tracks["cpu"] == tracks["cuda"]
