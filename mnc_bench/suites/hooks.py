"""The mmengine hook every suite run trains with: stops on a non-finite loss, records what the table needs.

Added to ``custom_hooks`` by the worker (registered in mmdet's HOOKS as ``SuiteRunHook``). It writes, into the
run directory (main process only):

- ``run_stats.json``: params, effective batch size, lr (after mmengine's auto-scaling, before warm-up),
  max_iters, world size, wall-clock times of the runner being built and of the first iteration, and
  ``train_time_s``, the time spent in the training loop summed over the attempts of a resumed run (kept up to
  date every few seconds, so a killed attempt's time counts);
- ``status.json``: the current iteration, every few seconds, for the progress display and ``status``.

A NaN/inf loss raises :class:`NonFiniteLoss` naming the iteration and the loss terms (mmdet's
``CheckInvalidLossHook`` does the same check but raises a bare AssertionError). In a distributed run every
rank raises it, with the same reason (the first rank's that saw one): a rank that stopped alone would leave
the others waiting in the next gradient all-reduce until NCCL's timeout, the run ``running`` without a reason.
"""

from __future__ import annotations

import math
import time
from typing import Any

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mnc_bench.suites.contract import RUN_STATS_JSON
from mnc_bench.suites.rundir import RunDir

PROGRESS_EVERY_S = 5.0


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class SuiteRunHook(Hook):
    priority = "VERY_HIGH"  # check the loss before the checkpoint hook saves NaN weights

    def __init__(self, run_dir: str) -> None:
        self.run_dir = RunDir(run_dir)
        self._last_progress = 0.0
        self._first_iter_done = False
        self._first_iter_started_at = 0.0
        self._started = 0.0
        self._earlier_attempts_s = 0.0

    def before_train(self, runner: Any) -> None:
        if not is_main_process():
            return
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        group = runner.optim_wrapper.optimizer.param_groups[0]
        loader = runner.train_dataloader
        batch = getattr(loader, "batch_size", None) or getattr(loader.batch_sampler, "batch_size", None)
        stats = self.run_dir.read_json(RUN_STATS_JSON) or {}
        self._started = time.time()
        # A run resumed from a checkpoint (iteration > 0) adds to the time its earlier attempts trained.
        self._earlier_attempts_s = float(stats.get("train_time_s") or 0.0) if runner.iter > 0 else 0.0
        stats.update(
            train_time_s=self._earlier_attempts_s,
            params=int(sum(p.numel() for p in model.parameters())),
            batch_size=int(batch) * runner.world_size if batch else None,
            lr=float(group.get("initial_lr", group["lr"])),
            max_iters=int(runner.max_iters),
            world_size=int(runner.world_size),
            start_iter=int(runner.iter),
            runner_built_at=time.time(),
        )
        self.run_dir.write_json(RUN_STATS_JSON, stats)
        self.run_dir.update_status(iter=int(runner.iter), max_iters=int(runner.max_iters))

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if not self._first_iter_started_at:  # its batch is loaded; kept until the iteration's record
            self._first_iter_started_at = time.time()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        loss = _number((outputs or {}).get("loss", 0.0))
        reason = None
        if not math.isfinite(loss):
            bad = [name for name, value in outputs.items()
                   if name != "loss" and not math.isfinite(_number(value))]
            reason = f"loss is {loss} at iteration {runner.iter + 1}"
            reason += f" ({', '.join(bad)} non-finite)" if bad else ""
        reason = first_reason_of_any_rank(reason)
        if reason is not None:
            raise NonFiniteLoss(reason)
        if not is_main_process():
            return
        now = time.time()
        if not self._first_iter_done:
            self._first_iter_done = True
            self._record(first_iter_started_at=self._first_iter_started_at, first_iter_at=now)
        if now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            self._record()
            self.run_dir.update_status(iter=int(runner.iter) + 1, max_iters=int(runner.max_iters))

    def after_train(self, runner: Any) -> None:
        if is_main_process():
            self._record()

    def _record(self, **fields: Any) -> None:
        stats = self.run_dir.read_json(RUN_STATS_JSON) or {}
        stats.update(fields, train_time_s=self._earlier_attempts_s + time.time() - self._started)
        self.run_dir.write_json(RUN_STATS_JSON, stats)


def first_reason_of_any_rank(reason: str | None) -> str | None:
    """On every rank of a distributed run: the reason of the lowest rank that has one ('... on rank R'), or
    None. One all-reduce of a flag per call, a gather of the reasons only when some rank has one. mmengine's
    ``all_reduce`` moves the flag to the process group's device and back (NCCL reduces CUDA tensors only)."""
    from mmengine.dist import all_gather_object, all_reduce, get_world_size

    if get_world_size() == 1:
        return reason
    import torch

    flag = torch.tensor([0 if reason is None else 1], dtype=torch.int32)
    all_reduce(flag, op="max")
    if int(flag.item()) == 0:
        return None
    reasons = all_gather_object(reason)
    rank = next(rank for rank, text in enumerate(reasons) if text is not None)
    return f"{reasons[rank]} on rank {rank}"


def _number(value: Any) -> float:
    return float(value.detach() if hasattr(value, "detach") else value)
