"""The plain-PyTorch cascade: training losses, gradient paths, determinism, stage modules, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnc_bench.models.mnc import (
    BoxCoder,
    ClassStage,
    ClassStageOutput,
    InstanceTargets,
    MaskStage,
    MNCCascade,
    RoISampling,
    StageLossWeights,
)
from mnc_bench.models.mnc.boxes import clip_gradient
from mnc_bench.models.mnc.targets import RoIAssignment, assign_rois, mask_targets, sample_rois


def run_losses(tiny_mnc, cascade: MNCCascade, backbone: nn.Module, seed: int = 0):
    images, proposals, targets = tiny_mnc.make_batch(seed)
    losses = cascade.loss(backbone(images), proposals, targets, [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3)
    return losses, proposals


@pytest.mark.parametrize("num_stages", [3, 5])
def test_forward_backward_reaches_every_stage(num_stages, tiny_mnc):
    torch.manual_seed(0)
    backbone, cascade = tiny_mnc.TinyBackbone(), tiny_mnc.make_cascade(num_stages, share_weights=False)
    losses, proposals = run_losses(tiny_mnc, cascade, backbone)
    expected = {"loss_mask_s2", "loss_cls_s3", "loss_box_s3"}
    if num_stages == 5:
        expected |= {"loss_mask_s4", "loss_cls_s5", "loss_box_s5"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    for name, parameter in list(cascade.named_parameters()) + list(backbone.named_parameters()):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proposals)


def test_later_stages_alone_reach_the_proposals_and_the_first_round_regressor(tiny_mnc):
    """Stage 4/5 losses train the proposal boxes and stage 3's box regressor through the re-entering boxes."""
    torch.manual_seed(0)
    cascade = tiny_mnc.make_cascade(5, share_weights=False)
    losses, proposals = run_losses(tiny_mnc, cascade, tiny_mnc.TinyBackbone())
    (losses["loss_mask_s4"] + losses["loss_cls_s5"]).backward()
    assert cascade.class_stages[0].box_regressor.weight.grad.abs().sum() > 0
    assert sum(p.grad.abs().sum() for p in proposals) > 0


@pytest.mark.parametrize("num_stages", [3, 5])
def test_box_grad_false_gives_exactly_zero_gradient_into_the_proposals(num_stages, tiny_mnc):
    torch.manual_seed(0)
    cascade = tiny_mnc.make_cascade(num_stages, box_grad=False)
    losses, proposals = run_losses(tiny_mnc, cascade, tiny_mnc.TinyBackbone())
    sum(losses.values()).backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in proposals)
    if num_stages == 5:  # stage 3's regressor then learns only from its own loss
        torch.manual_seed(0)
        cascade = tiny_mnc.make_cascade(5, box_grad=False, share_weights=False)
        losses, _ = run_losses(tiny_mnc, cascade, tiny_mnc.TinyBackbone())
        (losses["loss_mask_s4"] + losses["loss_cls_s5"]).backward()
        assert cascade.class_stages[0].box_regressor.weight.grad is None


def test_box_grad_clip_bounds_the_gradient_into_the_first_round_box_deltas(tiny_mnc):
    def regressor_gradient(clip):
        torch.manual_seed(0)
        cascade = tiny_mnc.make_cascade(5, share_weights=False, box_grad_clip=clip)
        losses, _ = run_losses(tiny_mnc, cascade, tiny_mnc.TinyBackbone())
        (1000 * losses["loss_mask_s4"]).backward()
        return cascade.class_stages[0].box_regressor.weight.grad

    unclipped, clipped = regressor_gradient(None), regressor_gradient(1e-6)
    assert unclipped.abs().sum() > 100 * clipped.abs().sum() > 0


def test_regressed_boxes_clipped_at_the_border_send_no_gradient_into_their_deltas(tiny_mnc):
    cascade = tiny_mnc.make_cascade(5)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 40.0, 60.0, 60.0]])
    box_deltas = torch.zeros(2, tiny_mnc.NUM_CLASSES, 4)
    box_deltas[1, :, 0] = 5.0  # moves the second box 5 * 0.1 * 20 px right, past the 64 px border
    box_deltas.requires_grad_(True)
    output = ClassStageOutput(
        cls_logits=torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]),
        seg_cls_logits=None,
        box_deltas=box_deltas,
    )
    (regressed,) = cascade._regress([boxes], output, [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)])
    assert regressed[1, 2] == tiny_mnc.IMAGE
    regressed.sum().backward()
    assert box_deltas.grad[0].abs().sum() > 0
    assert torch.count_nonzero(box_deltas.grad[1]) == 0


def test_clip_gradient_is_identity_forward_and_clamps_backward():
    values = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    clipped = clip_gradient(values, 0.5)
    assert torch.equal(clipped, values)
    (clipped * torch.tensor([10.0, -10.0, 0.1])).sum().backward()
    assert values.grad.tolist() == pytest.approx([0.5, -0.5, 0.1])
    assert clip_gradient(values, None) is values


def test_share_weights_uses_one_module_per_stage_kind(tiny_mnc):
    assert len(tiny_mnc.make_cascade(7, share_weights=True).mask_stages) == 1
    unshared = tiny_mnc.make_cascade(7, share_weights=False)
    assert len(unshared.mask_stages) == 3 and len(unshared.class_stages) == 3
    assert unshared.mask_stages[0].hidden.weight is not unshared.mask_stages[1].hidden.weight


def test_same_seed_gives_identical_losses_over_iterations(tiny_mnc):
    def train(seed: int) -> list[list[float]]:
        torch.manual_seed(seed)
        backbone, cascade = tiny_mnc.TinyBackbone(), tiny_mnc.make_cascade(5)
        parameters = list(backbone.parameters()) + list(cascade.parameters())
        optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9)
        history = []
        for iteration in range(3):
            losses, _ = run_losses(tiny_mnc, cascade, backbone, seed=iteration)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            history.append([float(v.detach()) for v in losses.values()])
        return history

    first, second = train(7), train(7)
    assert first == second
    assert train(8) != first


def test_loss_weights_scale_their_terms_per_round(tiny_mnc):
    def losses_with(weights):
        torch.manual_seed(0)
        return run_losses(tiny_mnc, tiny_mnc.make_cascade(5, loss_weights=weights),
                          tiny_mnc.TinyBackbone())[0]

    base = losses_with(StageLossWeights())
    weighted = losses_with([StageLossWeights(mask=2.0, cls=0.5, box=0.0), StageLossWeights(mask=3.0)])
    torch.testing.assert_close(weighted["loss_mask_s2"], 2 * base["loss_mask_s2"])
    torch.testing.assert_close(weighted["loss_cls_s3"], 0.5 * base["loss_cls_s3"])
    assert weighted["loss_box_s3"] == 0
    torch.testing.assert_close(weighted["loss_mask_s4"], 3 * base["loss_mask_s4"])


def test_predict_pools_all_rounds(tiny_mnc):
    torch.manual_seed(0)
    backbone, cascade = tiny_mnc.TinyBackbone(), tiny_mnc.make_cascade(5).eval()
    images, proposals, _ = tiny_mnc.make_batch()
    with torch.no_grad():
        outputs = cascade.predict(backbone(images), proposals, [(tiny_mnc.IMAGE, tiny_mnc.IMAGE)] * 3)
    for output, image_proposals in zip(outputs, proposals):
        n = 2 * len(image_proposals)
        assert output.mask_boxes.shape == (n, 4) and output.mask_logits.shape == (n, 6, 6)
        assert output.class_probs.shape == (n, tiny_mnc.NUM_CLASSES + 1)
        assert output.class_boxes.shape == (n, tiny_mnc.NUM_CLASSES, 4)
        torch.testing.assert_close(output.mask_boxes[: len(image_proposals)], image_proposals.detach())
        torch.testing.assert_close(output.class_probs.sum(dim=1), torch.ones(n))
        # Round 2 runs on round 1's boxes, each regressed for its best foreground class.
        first = slice(0, len(image_proposals))
        best = output.class_probs[first, 1:].argmax(dim=1)
        regressed = output.class_boxes[first][torch.arange(len(best)), best]
        torch.testing.assert_close(output.mask_boxes[len(image_proposals):], regressed)
        assert not torch.allclose(regressed, image_proposals)


def test_sampling_respects_the_foreground_fraction_and_the_budget():
    torch.manual_seed(0)
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    background = torch.tensor([[40.0, 40.0, 60.0, 60.0]]).repeat(100, 1)
    boxes = torch.cat((gt.repeat(40, 1) + torch.rand(40, 4), background))
    chosen = sample_rois(boxes, gt, RoISampling(num_rois=64, fg_fraction=0.25))
    assert len(chosen) == 64 and (chosen < 40).sum() == 16
    only_background = sample_rois(boxes[40:], torch.zeros(0, 4), RoISampling(num_rois=64))
    assert len(only_background) == 64


def test_mask_targets_crop_the_ground_truth_to_the_roi():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:24, 8:16] = True  # left half of the box [8, 8, 24, 24]
    box = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    target = InstanceTargets(boxes=box, labels=torch.tensor([1]), masks=masks)
    rois = torch.tensor([[8.0, 8.0, 24.0, 24.0], [0.0, 0.0, 2.0, 2.0]])
    assignment = assign_rois(rois, target, fg_iou=0.5)
    assert assignment.labels.tolist() == [1, 0]
    crop = mask_targets(rois, assignment, target, mask_size=4)
    assert crop.shape == (1, 4, 4)
    assert crop[0, :, :2].all() and not crop[0, :, 2:].any()
    no_foreground = RoIAssignment(torch.zeros(2, dtype=torch.long), torch.full((2,), -1))
    empty = mask_targets(rois, no_foreground, target, 4)
    assert empty.shape == (0, 4, 4)


def test_box_coder_round_trip_and_class_stage_uses_the_mask():
    coder = BoxCoder()
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0]])
    targets = torch.tensor([[12.0, 18.0, 60.0, 44.0]])
    torch.testing.assert_close(coder.decode(boxes, coder.encode(boxes, targets)), targets)
    assert coder.decode(boxes, torch.zeros(1, 3, 4)).shape == (1, 3, 4)

    torch.manual_seed(0)
    stage = ClassStage(in_channels=2, num_classes=3, pooled_size=2, fc_dim=8)
    features = torch.randn(4, 2, 8, 8)
    logits_a = stage(features, torch.full((4, 5, 5), 10.0)).scoring_logits
    logits_b = stage(features, torch.full((4, 5, 5), -10.0)).scoring_logits
    assert not torch.allclose(logits_a, logits_b)


@pytest.mark.parametrize("build, field", [
    (lambda kit: kit.make_cascade(4), "num_stages"),
    (lambda kit: kit.make_cascade(1), "num_stages"),
    (lambda kit: kit.make_cascade(3, box_grad_clip=0.0), "box_grad_clip"),
    (lambda kit: kit.make_cascade(5, loss_weights=[StageLossWeights()] * 3), "loss_weights"),
    (lambda kit: StageLossWeights(mask=-1.0), "loss_weights.mask"),
    (lambda kit: MaskStage(in_channels=4, mask_size=3), "mask_size"),
    (lambda kit: MaskStage(in_channels=4, warp_size=7), "warp_size"),
    (lambda kit: ClassStage(in_channels=4, num_classes=0), "num_classes"),
    (lambda kit: ClassStage(in_channels=4, num_classes=2, fc_dim=0), "cls_fc_dim"),
    (lambda kit: RoISampling(fg_fraction=0.0), "fg_fraction"),
    (lambda kit: RoISampling(num_rois=0), "num_rois"),
    (lambda kit: BoxCoder(stds=(0.1, 0.1, 0.2)), "box_target_stds"),
])
def test_invalid_settings_raise_value_error_naming_the_field(build, field, tiny_mnc):
    with pytest.raises(ValueError, match=field):
        build(tiny_mnc)
