"""Mixed precision on the CPU: MNC's box-gradient clamp under a loss scaler, and --amp's one-line refusal
without a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("mmcv.ops")
from mmengine.dataset import pseudo_collate  # noqa: E402
from test_mnc_adapter import SHAPES_3, _build, _dataset  # noqa: E402

from mnc_bench.amp import LossScaleHook, add_loss_scale_hook, amp_options  # noqa: E402
from mnc_bench.cli import main  # noqa: E402
from mnc_bench.config_loading import load_config  # noqa: E402

SCALE = 2.0**16  # GradScaler's initial scale


def _gradients(model, batch, scaler: torch.amp.GradScaler | None) -> dict[str, torch.Tensor]:
    """Gradients of one training step, as AmpOptimWrapper takes it: LossScaleHook before the iteration,
    backward on the scaled loss, the scaler's unscale_ before the optimizer would step."""
    torch.manual_seed(0)  # the same RoI sample every time
    model.zero_grad()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    runner = SimpleNamespace(model=model, optim_wrapper=SimpleNamespace(loss_scaler=scaler))
    LossScaleHook().before_train_iter(runner, 0)
    data = model.data_preprocessor(batch, True)
    loss, _ = model.parse_losses(model(**data, mode="loss"))
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow  # three training steps of an MNC on the CPU (10-50 s)
def test_the_box_gradient_clamp_bounds_the_true_gradient_under_a_loss_scaler(shapes_dataset):
    """Backward through the clamp on a loss scaled by 2^16, unscaled, equals the fp32 gradient; the clamp is
    active (without it the RPN's regressor gets another gradient), so a clamp of the scaled gradient would
    leave its true bound 2^16 times too small."""
    model, cfg = _build(SHAPES_3)
    model.train()
    batch = pseudo_collate([_dataset(cfg, shapes_dataset, "train")[i] for i in range(2)])
    fp32 = _gradients(model, batch, None)
    assert model.loss_scale == 1.0
    scaled = _gradients(model, batch, torch.amp.GradScaler("cpu", init_scale=SCALE))
    assert model.loss_scale == SCALE
    assert fp32.keys() == scaled.keys()
    for name in fp32:
        torch.testing.assert_close(scaled[name], fp32[name], msg=name)

    model.cascade.box_grad_clip = None
    unclamped = _gradients(model, batch, None)
    assert not torch.allclose(unclamped["rpn_head.rpn_reg.weight"], fp32["rpn_head.rpn_reg.weight"])


def test_only_an_amp_training_config_gets_the_loss_scale_hook():
    cfg = load_config(SHAPES_3)
    add_loss_scale_hook(cfg)
    assert not any(hook.get("type") == "LossScaleHook" for hook in cfg.get("custom_hooks") or [])
    cfg = load_config(SHAPES_3, amp_options())
    add_loss_scale_hook(cfg)
    add_loss_scale_hook(cfg)
    assert [hook["type"] for hook in cfg.custom_hooks].count("LossScaleHook") == 1
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.optimizer.type == "AdamW"
    assert cfg.test_cfg.fp16 is True


@pytest.mark.parametrize("command", ["train", "test"])
def test_amp_without_a_gpu_is_a_one_line_error(command, shapes_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [command, str(SHAPES_3)] + (["missing.pth"] if command == "test" else [])
    code = main([*args, "--amp", "--work-dir", str(tmp_path),
                 "--cfg-options", f"data_root={shapes_dataset}/"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: mixed precision (--amp") and "needs a CUDA GPU" in err[0]
