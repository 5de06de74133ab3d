"""Which weights `bench models` uses: trained checkpoints found among finished suite runs, offered or
taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mnc_bench.bench.report import format_tables
from mnc_bench.bench.weights import Weights, choose_checkpoints, find_trained_checkpoints, resolve_weights
from mnc_bench.cli import main
from mnc_bench.errors import UserError

MNC_3 = "configs/mnc/mnc_3stage_shapes.py"
MASK_RCNN = "configs/mask_rcnn/mask_rcnn_shapes.py"


def _run(results: Path, suite: str, run_id: str, config: str, *, seed: int = 0, state: str = "done",
         cfg_options: dict | None = None, ended: str = "2026-01-01T10:00:00+00:00",
         checkpoint: bool = True) -> Path:
    run_dir = results / suite / run_id
    (run_dir / "work").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"suite": suite, "run_id": run_id, "config": config,
                                                  "cfg_options": cfg_options or {}, "seed": seed}))
    (run_dir / "status.json").write_text(json.dumps({"state": state, "ended": ended}))
    path = run_dir / "work" / "iter_1000.pth"
    if checkpoint:
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    return path


def test_finds_the_finished_unchanged_runs_seed_zero_first(tmp_path):
    seed0 = _run(tmp_path, "mnc_vs_successors", "a0", MNC_3,
                 cfg_options={"default_hooks.logger.interval": 10})
    # later, seed 1
    _run(tmp_path, "mnc_vs_successors", "a1", MNC_3, seed=1, ended="2026-02-01T10:00:00+00:00")
    _run(tmp_path, "cascade_depth", "b0", MNC_3, cfg_options={"model.cascade.num_stages": 7})  # another model
    _run(tmp_path, "smoke", "c0", MASK_RCNN, cfg_options={"train_cfg.max_iters": 3})  # a shortened schedule
    _run(tmp_path, "mnc_vs_successors", "d0", MASK_RCNN, state="failed")
    found = find_trained_checkpoints([MNC_3, MASK_RCNN, "configs/panet/panet_shapes.py"], tmp_path)
    assert list(found) == ["mnc_3stage_shapes"]
    assert (found["mnc_3stage_shapes"].path == seed0
            and found["mnc_3stage_shapes"].run == "mnc_vs_successors/a0")


def test_a_run_without_a_whole_checkpoint_is_passed_over(tmp_path, capsys):
    path = _run(tmp_path, "s", "a0", MNC_3)
    path.write_bytes(path.read_bytes()[:20])  # truncated while saving
    _run(tmp_path, "s", "a1", MNC_3, checkpoint=False)
    assert find_trained_checkpoints([MNC_3], tmp_path) == {}
    assert find_trained_checkpoints([MNC_3], tmp_path / "missing") == {}


def test_choose_random_trained_and_ask(tmp_path):
    found = _run(tmp_path, "s", "a0", MNC_3)
    _run(tmp_path, "s", "b0", MASK_RCNN)
    explicit = {"mask_rcnn_shapes": "mine.pth"}
    given = {"mask_rcnn_shapes": Weights("mine.pth")}
    lines: list[str] = []
    choose = dict(results_root=tmp_path, print_fn=lines.append)
    assert choose_checkpoints("random", [MNC_3, MASK_RCNN], explicit, **choose) == given
    assert lines == []
    trained = {"mnc_3stage_shapes": Weights(str(found), "s/a0"), **given}  # --checkpoint wins
    assert choose_checkpoints("trained", [MNC_3, MASK_RCNN], explicit, **choose) == trained
    assert any("mnc_3stage_shapes" in line and "s/a0" in line for line in lines)
    assert choose_checkpoints("ask", [MNC_3, MASK_RCNN], explicit, ask=lambda _: "", **choose) == trained
    assert choose_checkpoints("ask", [MNC_3, MASK_RCNN], explicit, ask=lambda _: "n", **choose) == given

    def closed_input(prompt: str) -> str:
        raise EOFError  # what input() raises at Ctrl-D

    assert choose_checkpoints("ask", [MNC_3, MASK_RCNN], explicit, ask=closed_input, **choose) == given
    with pytest.raises(UserError, match="--weights"):
        choose_checkpoints("best", [MNC_3], {}, **choose)


def test_ask_without_a_terminal_says_how_to_use_them(tmp_path, monkeypatch):
    _run(tmp_path, "s", "a0", MNC_3)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    lines: list[str] = []
    assert choose_checkpoints("ask", [MNC_3], {}, results_root=tmp_path, print_fn=lines.append) == {}
    assert "WEIGHTS=trained" in lines[-1]


def test_a_checkpoint_is_named_by_its_run_or_its_path(tmp_path):
    latest = _run(tmp_path, "mnc_vs_successors", "a0", MNC_3)
    torch.save({"state_dict": {}}, latest.with_name("iter_500.pth"))  # an older one beside it
    from_run = Weights(str(latest), "mnc_vs_successors/a0")
    assert resolve_weights("m", "mnc_vs_successors/a0", tmp_path) == from_run
    # a file path: the run it lies in is recorded too, and a file outside every run has none
    assert resolve_weights("m", str(latest), tmp_path) == from_run
    outside = tmp_path / "mine.pth"
    outside.write_bytes(b"x")
    assert resolve_weights("m", str(outside), tmp_path) == Weights(str(outside))
    # neither a file nor a run: passed on for the settings' check to name
    assert resolve_weights("m", "mnc_vs_successors/zz", tmp_path) == Weights("mnc_vs_successors/zz")


@pytest.mark.parametrize("state, checkpoint, message", [
    ("running", True, "run s/a0 under .* has not finished"),
    ("done", False, "run s/a0 under .* has no whole checkpoint"),
])
def test_a_run_without_usable_weights_is_refused_by_name(tmp_path, state, checkpoint, message):
    _run(tmp_path, "s", "a0", MNC_3, state=state, checkpoint=checkpoint)
    with pytest.raises(UserError, match=f"^--checkpoint m=s/a0: {message}$"):
        resolve_weights("m", "s/a0", tmp_path)


def _results(weights: dict[str, str]) -> dict:
    records = []
    for model, model_type in (("mask_rcnn_shapes", "MaskRCNN"), ("mnc_3stage_shapes", "MNC")):
        record = {key: 1.0 for key in ("detections", "infer_ms_median", "infer_ms_q1", "infer_ms_q3",
                                       "infer_pre_ms", "infer_net_ms", "infer_post_ms", "gflops",
                                       "infer_gflops_per_s", "infer_share_of_peak", "infer_peak_rss_mb",
                                       "ratio_infer_to_mask_rcnn")}
        record.update({f"{key}_thr0": value for key, value in record.items() if not key.startswith("ratio")})
        records.append({**record, "model": model, "model_type": model_type, "score_thr": 0.05,
                        "proposals": 300, "weights": weights[model], "ratio_infer_thr0_to_mask_rcnn": 1.0})
    machine = {"cpu": "cpu", "threads": 2, "torch": "2", "load_avg_1min_start": 1.0, "load_avg_1min_end": 1.0,
               "matmul_peak_gflops": 100.0}
    settings = {"repeats": 1, "train_iters": 0, "flop_counter": "x", "flops_not_counted": ["y"],
                "memory": "z", "reference_model_type": "MaskRCNN"}
    return {"machine": machine, "settings": settings, "by_size": {"128": records}}


def test_the_table_says_when_mnc_ran_with_random_weights():
    text = "\n".join(format_tables(_results({"mask_rcnn_shapes": "random", "mnc_3stage_shapes": "random"})))
    assert "mnc_3stage_shapes: random" in text and "mnc_3stage_shapes ran with random weights" in text
    text = "\n".join(format_tables(_results({"mask_rcnn_shapes": "random",
                                             "mnc_3stage_shapes": "checkpoint"})))
    assert "mnc_3stage_shapes: checkpoint" in text and "ran with random weights" not in text


def test_weights_is_a_checked_choice(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "models", "--weights", "best"])
    assert (exit_info.value.code == 2
            and "argument --weights: invalid choice: 'best'" in capsys.readouterr().err)
