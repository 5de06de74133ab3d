"""Mixed precision (``--amp``): mmengine's ``AmpOptimWrapper`` for training, its ``TestLoop(fp16=True)`` for
the test pass, and the one thing MNC needs under them.

mmengine's AmpOptimWrapper (0.10.x) runs the forward pass under ``autocast`` and the backward pass on
``loss_scaler.scale(loss)``, a ``torch.amp.GradScaler``; the gradients are divided by the scale only at the
optimizer step (``unscale_``, or inside ``loss_scaler.step``). Every gradient seen *during* the backward pass
is therefore multiplied by the current scale (65536 to start with). MNC clamps the gradient that later stages
send into the box deltas element-wise (MNC-code's 1/512): the clamp must bound the true gradient, so
:class:`LossScaleHook` hands the current scale to the model before each iteration and the model scales its
bound alike (``MNCCascade.box_grad_bound``). Models without a ``loss_scale`` attribute are left alone.

The wrapper asserts a GPU (CUDA, NPU, MLU or MUSA) when it is built: :func:`require_amp_device` says so in one
line before anything is built.
"""

from __future__ import annotations

from typing import Any

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mnc_bench.errors import UserError

AMP_WRAPPER = "AmpOptimWrapper"
# Config changes of --amp, as options (the form of --cfg-options and a suite's cfg_options). The wrapper's
# default loss_scale "dynamic" is GradScaler's growth and back-off; the optimizer and its clipping stay as
# they are.
TRAIN_OPTIONS: dict[str, Any] = {"optim_wrapper.type": AMP_WRAPPER}
TEST_OPTIONS: dict[str, Any] = {"test_cfg": {"fp16": True}}  # merged into the config's TestLoop settings


def amp_options() -> dict[str, Any]:
    """The options that make a run train and test in mixed precision (``mnc-bench run --amp``)."""
    return {**TRAIN_OPTIONS, **TEST_OPTIONS}


def uses_amp(cfg: Any, phase: str) -> bool:
    """Whether ``cfg`` trains with mmengine's AmpOptimWrapper (``phase`` "train") or tests in fp16
    ("test")."""
    if phase == "train":
        return (cfg.get("optim_wrapper") or {}).get("type") == AMP_WRAPPER
    return bool((cfg.get("test_cfg") or {}).get("fp16"))


def require_amp_device(cfg: Any, phase: str) -> None:
    """A one-line error when ``cfg`` asks for mixed precision in ``phase`` and no GPU is visible."""
    import torch

    if uses_amp(cfg, phase) and not torch.cuda.is_available():
        raise UserError("mixed precision (--amp, AmpOptimWrapper or test_cfg.fp16) needs a CUDA GPU and none "
                        "is visible; drop --amp to run in fp32 on the CPU")


def add_loss_scale_hook(cfg: Any) -> None:
    """Have a training config with AmpOptimWrapper keep the model's ``loss_scale`` current."""
    if not uses_amp(cfg, "train"):
        return
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(hook.get("type") == LossScaleHook.__name__ for hook in hooks):
        hooks.append(dict(type=LossScaleHook.__name__))
    cfg.custom_hooks = hooks


@HOOKS.register_module()
class LossScaleHook(Hook):
    """Before each training iteration, sets ``model.loss_scale`` to the GradScaler's current scale (what the
    loss is multiplied by before backward); 1.0 without a scaler. ``get_scale`` costs one device sync per
    iteration."""

    priority = "VERY_HIGH"

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, "loss_scale"):
            return
        scaler = getattr(runner.optim_wrapper, "loss_scaler", None)
        model.loss_scale = float(scaler.get_scale()) if scaler is not None else 1.0
