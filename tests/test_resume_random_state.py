"""A resumed run continues the random streams it stopped in: killed and resumed, it ends with the weights of
the run that never stopped (mmengine alone reseeds on resume)."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("mmcv.ops")

import torch  # noqa: E402
from mmengine.runner import IterBasedTrainLoop  # noqa: E402

from mnc_bench.random_state import (  # noqa: E402
    CHECKPOINT_KEY,
    RandomStateHook,
    capture_random_state,
    restore_random_state,
)
from mnc_bench.training import train  # noqa: E402

MNC = Path(__file__).resolve().parents[1] / "configs" / "mnc" / "mnc_3stage_shapes.py"


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(shapes_dataset, tmp_path, fast_options):
    """Validation at iteration 2 lies between the checkpoint the resumed run starts from and its next step."""
    def options(iters: int) -> list[str]:
        return [*fast_options(shapes_dataset, iters=iters), "train_cfg.val_interval=2"]

    whole = train(MNC, work_dir=tmp_path / "whole", seed=3, cfg_options=options(4))
    train(MNC, work_dir=tmp_path / "stopped", seed=3, cfg_options=options(2))
    saved = torch.load(tmp_path / "stopped" / "iter_2.pth", map_location="cpu", weights_only=True)
    assert set(saved[CHECKPOINT_KEY]) >= {"python", "numpy", "torch"}
    resumed = train(MNC, work_dir=tmp_path / "stopped", seed=3, resume=True, cfg_options=options(4))
    expected, got = _weights(whole.checkpoint), _weights(resumed.checkpoint)
    assert expected.keys() == got.keys()
    assert [name for name in expected if not torch.equal(expected[name], got[name])] == []


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_captured_states_restore_every_generator_and_survive_a_weights_only_load(tmp_path):
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    state = capture_random_state()
    first = _draws()
    torch.save({CHECKPOINT_KEY: state}, tmp_path / "state.pth")
    restore_random_state(torch.load(tmp_path / "state.pth", weights_only=True)[CHECKPOINT_KEY])
    assert _draws() == first


class _Loop(IterBasedTrainLoop):
    """What the hook reads of mmengine's loop: the iteration and the data iterator."""

    def __init__(self, iteration: int) -> None:  # no runner, no data loader
        self._iter = iteration
        self.dataloader_iterator = iter(range(100))


def test_an_iteration_based_resume_restores_the_states_after_the_replayed_batches():
    hook, loop = RandomStateHook(), _Loop(iteration=3)
    state = capture_random_state()
    expected = _draws()
    hook.after_load_checkpoint(None, {CHECKPOINT_KEY: state})
    hook.before_train_epoch(SimpleNamespace(train_loop=loop))
    replayed = [next(loop.dataloader_iterator) for _ in range(3)]  # mmengine's loop skips the trained batches
    assert replayed == [0, 1, 2] and _draws() != expected  # not restored while replaying
    assert next(loop.dataloader_iterator) == 3  # the first batch to train, fetched after restoring
    assert _draws() == expected
    assert next(loop.dataloader_iterator) == 4 and isinstance(loop.dataloader_iterator, type(iter(range(1))))


def test_a_run_that_only_loads_weights_keeps_its_seed_streams():
    hook, loop = RandomStateHook(), _Loop(iteration=0)  # load_from: iteration 0
    hook.after_load_checkpoint(None, {CHECKPOINT_KEY: capture_random_state()})
    before = loop.dataloader_iterator
    hook.before_train_epoch(SimpleNamespace(train_loop=loop))
    assert loop.dataloader_iterator is before


def test_validation_leaves_the_training_streams_where_it_found_them():
    hook = RandomStateHook()
    hook.before_val_epoch(None)
    expected = _draws()
    hook.after_val_epoch(None, {})
    assert _draws() == expected


def test_states_that_a_resume_mapped_onto_a_gpu_restore():
    # mmengine's resume loads the checkpoint onto the training device; the generators take CPU byte tensors.
    state = capture_random_state()
    expected = _draws()
    on_device = SimpleNamespace(cpu=lambda: state["torch"])  # stands in for the state as a CUDA tensor
    restore_random_state({**state, "torch": on_device})
    assert _draws() == expected


def test_only_rank_zero_takes_the_saved_states(monkeypatch):
    # The checkpoint holds rank 0's streams (only rank 0 saves); another rank resumes as mmengine does.
    monkeypatch.setattr("mnc_bench.random_state.get_rank", lambda: 1)
    hook, loop = RandomStateHook(), _Loop(iteration=3)
    before = loop.dataloader_iterator
    hook.after_load_checkpoint(None, {CHECKPOINT_KEY: capture_random_state()})
    hook.before_train_epoch(SimpleNamespace(train_loop=loop))
    assert loop.dataloader_iterator is before
