"""Checkpoint safety: whole-file checks, the fall-back past a truncated last checkpoint, `train --resume` on
it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mnc_bench.checkpoints import checkpoint_problem, latest_good_checkpoint, require_local_checkpoint
from mnc_bench.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MASK_RCNN = CONFIGS / "mask_rcnn" / "mask_rcnn_shapes.py"


def _save(path: Path, iteration: int) -> Path:
    torch.save({"meta": {"iter": iteration}, "state_dict": {"w": torch.arange(50_000, dtype=torch.float32)}},
               path)
    return path


def _truncate(path: Path, keep: float = 0.5) -> None:
    """What a kill -9 during mmengine's in-place save leaves: the first part of the file."""
    os.truncate(path, int(path.stat().st_size * keep))


def _work_dir(tmp_path: Path, iterations: list[int]) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for iteration in iterations:
        _save(work / f"iter_{iteration}.pth", iteration)
    (work / "last_checkpoint").write_text(str(work / f"iter_{max(iterations)}.pth"))
    return work


def test_checkpoint_problem_tells_whole_from_truncated_and_corrupt(tmp_path):
    path = _save(tmp_path / "a.pth", 1)
    assert checkpoint_problem(path) is None
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor's bytes: the archive still opens, the CRC fails
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(bytes(data))
    assert "fails its CRC check" in checkpoint_problem(corrupt)
    _truncate(path)
    assert checkpoint_problem(path).startswith("truncated")
    with pytest.raises(UserError, match=r"resume checkpoint .*a\.pth is truncated"):
        require_local_checkpoint(path, "resume checkpoint")


def test_latest_good_checkpoint_steps_back_past_a_truncated_last_one(tmp_path, capsys):
    work = _work_dir(tmp_path, [10, 20, 5])
    assert latest_good_checkpoint(work) == work / "iter_20.pth"
    _truncate(work / "iter_20.pth")
    assert latest_good_checkpoint(work) == work / "iter_10.pth"  # by number, not by name order
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "skipping checkpoint" in warnings[0] and "iter_20.pth" in warnings[0]
    _truncate(work / "iter_10.pth")
    _truncate(work / "iter_5.pth", keep=0.0)
    assert latest_good_checkpoint(work) is None


def test_latest_good_checkpoint_without_a_pointer_or_with_a_stale_one(tmp_path):
    assert latest_good_checkpoint(tmp_path) is None
    work = _work_dir(tmp_path, [10, 20])
    (work / "last_checkpoint").unlink()  # killed between the save and the pointer update
    assert latest_good_checkpoint(work) == work / "iter_20.pth"
    (work / "last_checkpoint").write_text(str(work / "iter_30.pth"))  # names a file that is gone
    assert latest_good_checkpoint(work) == work / "iter_20.pth"


def test_resume_with_only_truncated_checkpoints_is_one_line(tmp_path, shapes_dataset, capsys):
    pytest.importorskip("mmcv.ops")
    from mnc_bench.cli import main

    work = _work_dir(tmp_path, [10])
    _truncate(work / "iter_10.pth")
    code = main(["train", str(MASK_RCNN), "--resume", "--work-dir", str(work), "--cfg-options",
                 f"data_root={shapes_dataset}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1] == f"error: --resume: no checkpoint to resume in {work} (none there is whole)"


@pytest.mark.slow
def test_train_resume_falls_back_from_a_truncated_last_checkpoint(tmp_path, shapes_dataset, capsys):
    """Issue 13: checkpoints every 10 iterations to 20, iter_20.pth truncated (kill -9 while saving):
    `mnc-bench train --resume` warns, resumes from iter_10.pth and trains iterations 11-20 again."""
    pytest.importorskip("mmcv.ops")
    from mnc_bench.cli import main

    work = tmp_path / "work"
    options = [f"data_root={shapes_dataset}", "train_cfg.max_iters=20", "train_cfg.val_begin=1000",
               "train_dataloader.batch_size=1", "default_hooks.logger.interval=1",
               "default_hooks.checkpoint.interval=10", "default_hooks.checkpoint.max_keep_ckpts=5"]
    assert main(["train", str(MASK_RCNN), "--work-dir", str(work), "--cfg-options", *options]) == 0
    _truncate(work / "iter_20.pth")
    capsys.readouterr()
    assert main(["train", str(MASK_RCNN), "--resume", "--work-dir", str(work),
                 "--cfg-options", *options]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"skipping checkpoint {work / 'iter_20.pth'}: truncated" in warnings[0]
    assert "Traceback" not in captured.err
    log = sorted(work.glob("*/*.log"))[-1].read_text()
    assert f"Load checkpoint from {work / 'iter_10.pth'}" in log and "resumed epoch: 0, iter: 10" in log
    assert "Iter(train) [11/20]" in log and "Iter(train) [10/20]" not in log
    assert checkpoint_problem(work / "iter_20.pth") is None  # written again, whole
    assert torch.load(work / "iter_20.pth", map_location="cpu", weights_only=False)["meta"]["iter"] == 20
