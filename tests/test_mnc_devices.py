"""MNC's code keeps every tensor on its inputs' device: what breaks on a GPU, caught on the CPU.

On a GPU a tensor made without ``device=`` lands on the CPU while the inputs live on the GPU, and the first op
combining them fails. Three checks reproduce that class of bug without a GPU:

- the proposal controls run with inputs on the ``meta`` device (no data; their ops need none);
- the whole MNC (cascade, post-processing, proposal controls, the mmdet adapter) runs on real CPU inputs while
  every tensor that mnc_bench's own code creates without ``device=`` is put on ``meta`` instead: combined with
  an input it fails as it would on a GPU (third-party code is left alone: its ``torch.tensor(1).to(x)`` is
  right);
- no tensor factory in ``mnc_bench/models`` or ``baselines`` is called without ``device=``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from mnc_bench.models.mnc import MNCPostProcessor, ProposalControl

REPO = Path(__file__).resolve().parents[1]
PACKAGE = str(REPO / "mnc_bench")
FACTORY_NAMES = frozenset(function.__name__ for function in _device_constructors())
MODES = {
    "rpn, jitter, cap": dict(mode="rpn", jitter=0.1, max_proposals=5),
    "oracle": dict(mode="oracle", oracle_iou=0.7, jitter=0.05),
    "random": dict(mode="random", num_random=20, max_proposals=10),
}


class OwnFactoriesOnMeta(TorchFunctionMode):
    """Tensors created by mnc_bench's code without ``device=`` go to ``meta`` (as they would go to the CPU on
    a GPU run): combining one with an input tensor fails with torch's device error."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _device_constructors() and kwargs.get("device") is None:
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(PACKAGE):
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


@pytest.mark.parametrize("settings", MODES.values(), ids=MODES.keys())
def test_every_proposal_mode_runs_with_its_inputs_on_the_meta_device(settings):
    control = ProposalControl(**settings)
    proposals = [torch.rand(30, 4, device="meta"), torch.rand(12, 4, device="meta")]
    gt_boxes = [torch.rand(3, 4, device="meta"), torch.rand(1, 4, device="meta")]
    out = control(proposals, image_sizes=[(64, 80), (64, 80)], gt_boxes=gt_boxes, training=True)
    assert [boxes.device.type for boxes in out] == ["meta", "meta"]


def test_the_cascade_makes_no_tensor_away_from_its_inputs(tiny_mnc):
    torch.manual_seed(0)
    backbone = tiny_mnc.TinyBackbone()
    cascade = tiny_mnc.make_cascade(5, labels="both", box_grad_clip=1 / 512)
    images, proposals, targets = tiny_mnc.make_batch()
    sizes = [(64, 64)] * len(targets)
    with OwnFactoriesOnMeta():
        losses = cascade.loss(backbone(images), proposals, targets, sizes)
        sum(losses.values()).backward()
        assert all(p.grad is not None for p in proposals)  # the box gradient went through the clamp
        with torch.no_grad():
            outputs = cascade.predict(backbone(images), proposals, sizes)
            detections = MNCPostProcessor(score_thr=0.0, mask_voting=True)(outputs[0], image_size=(64, 64))
    assert detections.masks.device.type == "cpu" and detections.masks.shape[0] > 0


@pytest.mark.parametrize("settings", MODES.values(), ids=MODES.keys())
def test_every_proposal_mode_makes_no_tensor_away_from_its_inputs(settings, tiny_mnc):
    _, proposals, targets = tiny_mnc.make_batch()
    with OwnFactoriesOnMeta():
        out = ProposalControl(**settings)(proposals, image_sizes=[(64, 64)] * 3,
                                          gt_boxes=[t.boxes for t in targets], training=True)
    assert all(boxes.device.type == "cpu" for boxes in out)


@pytest.mark.slow  # ~15-30 s: an MNC of the shapes config, a training step and a test pass on the CPU
def test_the_mmdet_adapter_makes_no_tensor_away_from_its_inputs(shapes_dataset):
    pytest.importorskip("mmcv.ops")
    from mmengine.dataset import pseudo_collate
    from test_mnc_adapter import _build, _dataset

    torch.manual_seed(0)
    model, cfg = _build(proposal_control=dict(mode="oracle", max_proposals=20))
    batch = pseudo_collate([_dataset(cfg, shapes_dataset, "train")[i] for i in range(2)])
    with OwnFactoriesOnMeta():
        data = model.data_preprocessor(batch, True)
        losses = model.loss(data["inputs"], data["data_samples"])
        total = sum(v if isinstance(v, torch.Tensor) else sum(v) for v in losses.values())
        total.backward()
        model.eval()
        with torch.no_grad():
            test_batch = pseudo_collate([_dataset(cfg, shapes_dataset, "val")[0]])
            data = model.data_preprocessor(test_batch, False)
            predictions = model.predict(data["inputs"], data["data_samples"])
    assert predictions[0].pred_instances.masks.device.type == "cpu"


def _factories_without_device(path: Path) -> list[str]:
    """``torch.<factory>(...)`` calls in ``path`` that give no ``device=``, as 'file:line name'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr in FACTORY_NAMES
                and not any(keyword.arg in ("device", None) for keyword in node.keywords)):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} torch.{node.func.attr}")
    return found


def test_no_tensor_factory_in_the_models_is_called_without_a_device():
    files = sorted([*(REPO / "mnc_bench" / "models").rglob("*.py"), *(REPO / "baselines").rglob("*.py")])
    assert len(files) > 10
    offending = [hit for path in files for hit in _factories_without_device(path)]
    assert not offending, "give these a device= (the inputs' device): " + ", ".join(offending)
