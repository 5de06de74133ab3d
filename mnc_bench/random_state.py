"""Random generator states in checkpoints: a resumed run draws what an uninterrupted run would have drawn.

mmengine's checkpoints hold the model, optimizer, schedulers, iteration and seed, but not the generators'
states, so a resumed run goes on from its seed's first draws: from the resumed iteration on it samples other
RoIs and flips other images than an uninterrupted run, and ends with other weights (a kill costs a different
sample of the same seed, not only time). :class:`RandomStateHook` stores Python's, NumPy's and torch's (CPU
and, once initialised, CUDA) generator states in every checkpoint and puts them back where the stopped run
was when it saved:

- iteration-based loops: just before the first batch to train is fetched, after mmengine's loop has replayed
  the data loader over the batches already trained (the replay's transforms draw too);
- epoch-based loops: at the start of the resumed epoch.

Validation runs on a copy of the states (they are put back after it), so that a validation between a saved
checkpoint and the next training step draws nothing from the training's streams; the resumed run does not
repeat that validation. Under distributed training only rank 0 saves checkpoints (mmengine's
`save_checkpoint` runs on rank 0 alone), so a checkpoint holds rank 0's states: rank 0 restores them and the
other ranks resume as mmengine does (reseeded), since rank 0's streams are not theirs. CUDA's state is the
current device's, the one the process trains on. A checkpoint without states (older ones, other tools')
resumes as mmengine does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

CHECKPOINT_KEY = "random_state"


def capture_random_state() -> dict[str, Any]:
    """The generators' states, in types that `torch.load(weights_only=True)` reads back."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device's
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    """Set the generators to `state` (from :func:`capture_random_state`); CUDA's on the current device, where
    CUDA is available."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    # The generators take CPU byte tensors; mmengine's resume maps a checkpoint onto the GPU it trains on.
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if isinstance(cuda, torch.Tensor) and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda.cpu())


def add_random_state_hook(cfg: Any) -> None:
    """Have a training config save and resume its random generators' states (once)."""
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(hook.get("type") == RandomStateHook.__name__ for hook in hooks):
        hooks.append(dict(type=RandomStateHook.__name__))
    cfg.custom_hooks = hooks


class _RestoreBeforeFirstBatch:
    """Stands in for an iteration-based loop's data iterator while the loop replays the `loop.iter` batches
    already trained; restores `state` before fetching the first batch to train, then hands the loop its own
    iterator back."""

    def __init__(self, loop: IterBasedTrainLoop, state: dict[str, Any]) -> None:
        self._loop, self._batches, self._state = loop, loop.dataloader_iterator, state
        self._to_replay = loop.iter

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._to_replay > 0:
            self._to_replay -= 1
            return next(self._batches)
        restore_random_state(self._state)
        self._loop.dataloader_iterator = self._batches
        return next(self._batches)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the random generators' states with each checkpoint and restores them on resume (module doc)."""

    def __init__(self) -> None:
        self._resumed: dict[str, Any] | None = None
        self._before_validation: dict[str, Any] | None = None

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = capture_random_state()

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        self._resumed = checkpoint.get(CHECKPOINT_KEY) if get_rank() == 0 else None

    def before_train_epoch(self, runner: Any) -> None:
        state, self._resumed = self._resumed, None
        loop = runner.train_loop
        if state is None or loop.iter == 0:  # not a resume (load_from also loads a checkpoint)
            return
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreBeforeFirstBatch(loop, state)
        else:
            restore_random_state(state)

    def before_val_epoch(self, runner: Any) -> None:
        self._before_validation = capture_random_state()

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        if self._before_validation is not None:
            restore_random_state(self._before_validation)
            self._before_validation = None
