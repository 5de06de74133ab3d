"""Proposal-quality controls: cap, jitter, oracle, random, apply_at, determinism."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from mnc_bench.models.mnc import ProposalControl

SIZE = (100, 120)


def _rpn_boxes(n: int = 50, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(n, 2, generator=generator) * 60
    return torch.cat((corners, corners + 10 + torch.rand(n, 2, generator=generator) * 40), dim=1)


GT = [torch.tensor([[10.0, 10.0, 50.0, 40.0], [60.0, 20.0, 110.0, 90.0]]), torch.zeros(0, 4)]


def test_default_is_identity():
    proposals = [_rpn_boxes(), _rpn_boxes(seed=1)]
    out = ProposalControl()(proposals, image_sizes=[SIZE] * 2, gt_boxes=None, training=True)
    assert all(a is b for a, b in zip(out, proposals))


def test_cap_keeps_the_first_boxes():
    proposals = [_rpn_boxes(50), _rpn_boxes(5, seed=1)]
    out = ProposalControl(max_proposals=20)(proposals, image_sizes=[SIZE] * 2, gt_boxes=None, training=False)
    assert len(out[0]) == 20 and torch.equal(out[0], proposals[0][:20])
    assert len(out[1]) == 5


def test_jitter_noise_has_the_requested_scale_and_keeps_the_gradient():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0]]).repeat(20000, 1).requires_grad_()
    out = ProposalControl(jitter=0.1)([boxes], image_sizes=[SIZE], gt_boxes=None, training=True)[0]
    delta = (out - boxes).detach()
    # Corners are re-sorted only if they cross, which at 0.1 x size never happens here.
    assert delta[:, [0, 2]].std().item() == pytest.approx(0.1 * 40, rel=0.05)
    assert delta[:, [1, 3]].std().item() == pytest.approx(0.1 * 80, rel=0.05)
    assert delta.mean(dim=0).abs().max().item() < 0.2
    out.sum().backward()
    assert torch.equal(boxes.grad, torch.ones_like(boxes))


@pytest.mark.parametrize("target", [0.5, 0.7, 0.9])
def test_oracle_boxes_have_the_target_iou_with_their_ground_truth(target):
    control = ProposalControl(mode="oracle", oracle_iou=target, oracle_per_gt=25)
    out = control([_rpn_boxes(), _rpn_boxes()], image_sizes=[SIZE] * 2, gt_boxes=GT, training=True)
    assert out[0].shape == (50, 4) and out[1].shape == (0, 4)
    ious = box_iou(out[0], GT[0])
    own = torch.cat((ious[0::2, 0], ious[1::2, 1]))  # round-robin: box k belongs to ground truth k mod 2
    assert torch.allclose(own, torch.full_like(own, target), atol=1e-4)
    spread = out[0][0::2] - GT[0][0]
    assert spread.std(dim=0).min() > 0.5  # the boxes differ from each other


@pytest.mark.parametrize("cap", [1, 7, 10])
def test_a_capped_oracle_covers_every_object_evenly(cap):
    control = ProposalControl(mode="oracle", oracle_iou=0.8, oracle_per_gt=10, max_proposals=cap)
    out = control([_rpn_boxes()], image_sizes=[SIZE], gt_boxes=GT[:1], training=True)[0]
    owner = box_iou(out, GT[0]).argmax(dim=1)
    per_object = torch.bincount(owner, minlength=2)
    assert len(out) == cap and per_object.max() - per_object.min() <= 1, per_object


def test_a_capped_random_draw_keeps_the_requested_number():
    control = ProposalControl(mode="random", num_random=50, max_proposals=12)
    out = control([_rpn_boxes(), _rpn_boxes(seed=1)], image_sizes=[SIZE] * 2, gt_boxes=None, training=True)
    assert [len(boxes) for boxes in out] == [12, 12]


def test_processes_of_a_distributed_run_draw_different_noise():
    def draw(rank: int) -> torch.Tensor:
        control = ProposalControl(jitter=0.1, seed=0, rank=rank)
        return control([_rpn_boxes()], image_sizes=[SIZE], gt_boxes=None, training=True)[0]

    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))


def test_random_mode_ignores_the_rpn():
    control_a = ProposalControl(mode="random", num_random=30, seed=3)
    control_b = ProposalControl(mode="random", num_random=30, seed=3)
    out_a = control_a([_rpn_boxes(seed=0)], image_sizes=[SIZE], gt_boxes=None, training=True)[0]
    out_b = control_b([_rpn_boxes(seed=1)], image_sizes=[SIZE], gt_boxes=None, training=True)[0]
    assert torch.equal(out_a, out_b) and out_a.shape == (30, 4)
    height, width = SIZE
    assert (out_a[:, 0] >= 0).all() and (out_a[:, 2] <= width).all() and (out_a[:, 3] <= height).all()
    assert ((out_a[:, 2:] - out_a[:, :2]) >= 4.0 - 1e-4).all()


@pytest.mark.parametrize("apply_at, train_changed, test_changed", [
    ("train", True, False),
    ("test", False, True),
    ("both", True, True),
])
def test_apply_at_is_respected(apply_at, train_changed, test_changed):
    proposals = [_rpn_boxes()]
    control = ProposalControl(max_proposals=10, apply_at=apply_at)
    train = control(proposals, image_sizes=[SIZE], gt_boxes=None, training=True)[0]
    test = control(proposals, image_sizes=[SIZE], gt_boxes=None, training=False)[0]
    assert (len(train) == 10) == train_changed
    assert (len(test) == 10) == test_changed


def test_same_seed_same_boxes_and_the_global_rng_is_untouched():
    def draw(seed: int) -> torch.Tensor:
        control = ProposalControl(mode="oracle", oracle_iou=0.6, jitter=0.05, seed=seed)
        return control([_rpn_boxes()], image_sizes=[SIZE], gt_boxes=GT[:1], training=True)[0]

    torch.manual_seed(0)
    first = draw(1)
    after_first = torch.rand(1)
    torch.manual_seed(0)
    second = draw(1)
    assert torch.equal(first, second) and torch.equal(after_first, torch.rand(1))
    assert not torch.equal(first, draw(2))


def test_oracle_without_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="oracle"):
        ProposalControl(mode="oracle")([_rpn_boxes()], image_sizes=[SIZE], gt_boxes=None, training=False)


@pytest.mark.parametrize("kwargs, field", [
    (dict(mode="mcg"), "mode"),
    (dict(apply_at="sometimes"), "apply_at"),
    (dict(max_proposals=0), "max_proposals"),
    (dict(jitter=-0.1), "jitter"),
    (dict(oracle_iou=1.5), "oracle_iou"),
    (dict(num_random=0), "num_random"),
])
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ProposalControl(**kwargs)
