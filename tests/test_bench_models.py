"""`mnc-bench bench models`: the measurements it is built from, a 1-repeat run, and the inference entry
point."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mnc_bench.bench.measure import PeakMemory, count_flops, matmul_peak_gflops, quartiles
from mnc_bench.cli import main
from mnc_bench.errors import UserError

MASK_RCNN = "configs/mask_rcnn/mask_rcnn_shapes.py"
MNC_3 = "configs/mnc/mnc_3stage_shapes.py"
# Every field of a model row in interfaces.md, plus the threshold-0 and training details the table prints.
ROW_FIELDS = (
    "model", "config", "params", "gflops", "infer_ms_median", "infer_ms_q1", "infer_ms_q3", "infer_pre_ms",
    "infer_net_ms", "infer_post_ms", "train_s_per_iter", "train_img_per_s", "peak_rss_mb", "gflops_per_s",
    "share_of_peak", "ratio_infer_to_mask_rcnn", "ratio_train_to_mask_rcnn", "weights", "score_thr",
    "infer_ms_median_thr0", "infer_post_ms_thr0", "detections", "detections_thr0", "train_gflops_per_iter",
    "train_data_s_per_iter", "infer_share_of_peak", "size", "proposals",
)


def test_conv_flops_equal_the_hand_computed_count():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # 2 FLOPs per multiply-add: 2 x (batch 2 x 8 x 16 x 16 outputs) x (3 x 3 x 3 inputs each); bias not
    # counted.
    assert count_flops(lambda: conv(torch.randn(2, 3, 16, 16))) == 2 * (2 * 8 * 16 * 16) * (3 * 3 * 3)
    strided = nn.Conv2d(4, 6, kernel_size=3, stride=2, bias=False)  # 16 -> 7
    assert count_flops(lambda: strided(torch.randn(1, 4, 16, 16))) == 2 * (6 * 7 * 7) * (4 * 3 * 3)
    linear = nn.Linear(10, 5)
    inputs = torch.randn(3, 10, requires_grad=True)
    # forward + 2 backward
    assert count_flops(lambda: linear(inputs).sum().backward()) == 3 * (2 * 3 * 10 * 5)


def test_quartiles_and_matmul_peak():
    assert quartiles([4.0]) == (4.0, 4.0, 4.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert matmul_peak_gflops(size=128, repeats=2) > 0


def test_peak_memory_sees_what_a_block_allocates():
    memory = PeakMemory(torch.device("cpu"))
    with memory.track():
        small = memory.peak_mb
    with memory.track():
        block = torch.ones(64 * 2**20)  # 256 MB, touched
        del block
    assert "RSS" in memory.method and memory.peak_mb > small + 200
    later = PeakMemory(torch.device("cpu"))
    with later.track():  # the peak is reset for each block: the freed 256 MB do not count here
        pass
    assert later.peak_mb < memory.peak_mb - 200


def test_peak_memory_says_when_the_allocator_keeps_freed_memory(monkeypatch):
    import mnc_bench.bench.measure as measure

    monkeypatch.setattr(measure, "tuned", lambda: True)
    assert "a row is the peak so far" in PeakMemory(torch.device("cpu")).method
    monkeypatch.setattr(measure, "tuned", lambda: False)
    assert "peak so far" not in PeakMemory(torch.device("cpu")).method


def _load_json(path) -> dict:
    return json.loads(path.read_text())


def test_one_repeat_run_on_the_smallest_config_writes_every_field(tmp_path, capsys, monkeypatch):
    import mnc_bench.bench.models as bench_models

    # A smaller matmul for the peak: the 2048 x 2048 default takes seconds on one core.
    monkeypatch.setattr(bench_models, "matmul_peak_gflops", functools.partial(matmul_peak_gflops, size=512))
    out = tmp_path / "bench" / "models.json"
    argv = ["bench", "models", "--configs", MASK_RCNN, "--size", "64", "--repeats", "1", "--train-iters", "1",
            "--warmup", "0", "--batch", "2", "--json", str(out)]
    assert main(argv) == 0
    results = _load_json(out)
    assert {"cpu", "threads", "torch", "gpu", "matmul_peak_gflops"} <= set(results["machine"])
    assert results["machine"]["matmul_peak_gflops"] > 0
    assert results["settings"]["size"] == [64] and results["settings"]["batch"] == 2
    assert results["settings"]["repeats"] == 1
    [row] = results["models"]
    assert results["by_size"] == {"64": results["models"]}
    missing = [key for key in ROW_FIELDS if row.get(key) is None]
    assert not missing, missing
    assert row["model"] == "mask_rcnn_shapes" and row["weights"] == "random" and row["score_thr"] == 0.05
    assert row["ratio_infer_to_mask_rcnn"] == row["ratio_train_to_mask_rcnn"] == 1.0
    assert row["post_processing_timed"] == ["roi_head.bbox_head.predict_by_feat",
                                            "roi_head.mask_head.predict_by_feat"]
    assert row["infer_ms_median"] == pytest.approx(row["infer_pre_ms"] + row["infer_net_ms"]
                                                   + row["infer_post_ms"])
    assert row["gflops"] > 0.1 and row["train_gflops_per_iter"] > 0.1
    assert row["train_img_per_s"] == pytest.approx(2 / row["train_s_per_iter"])
    assert row["share_of_peak"] == pytest.approx(row["gflops_per_s"]
                                                 / results["machine"]["matmul_peak_gflops"])
    printed = capsys.readouterr().out
    assert "mask_rcnn_shapes" in printed and "vs MaskRCNN" in printed and "not counted" in printed


@pytest.mark.slow
def test_mnc_beside_mask_rcnn_with_a_checkpoint(tmp_path, capsys):
    from mnc_bench.inference import load_model

    run_dir = tmp_path / "results" / "mnc_vs_successors" / "a0"  # a finished suite run's weights
    (run_dir / "work").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"config": MNC_3, "seed": 0}))
    (run_dir / "status.json").write_text(json.dumps({"state": "done"}))
    torch.save({"state_dict": load_model(MNC_3).model.state_dict()}, run_dir / "work" / "iter_1000.pth")
    out = tmp_path / "models.json"
    argv = ["bench", "models", "--configs", MASK_RCNN, MNC_3, "--size", "64", "--repeats", "1",
            "--train-iters", "1", "--warmup", "1", "--batch", "1",
            "--checkpoint", "mnc_3stage_shapes=mnc_vs_successors/a0", "--results", str(tmp_path / "results"),
            "--profile", str(tmp_path / "profiles"), "--json", str(out)]
    assert main(argv) == 0
    mask_rcnn, mnc = _load_json(out)["models"]
    profiles = sorted(path.name for path in (tmp_path / "profiles").iterdir())
    assert profiles == sorted(f"{model}_64px_{phase}.txt"
                              for model in ("mask_rcnn_shapes", "mnc_3stage_shapes")
                              for phase in ("infer_thr0.05", "infer_thr0", "train"))
    text = (tmp_path / "profiles" / "mnc_3stage_shapes_64px_infer_thr0.txt").read_text()
    # the per-op table, and the Python profile down to MNC's RoI kernels and post-processing
    assert "torch.profiler" in text and "window_kernels.py" in text and "postprocess.py" in text
    assert (mask_rcnn["weights"], mnc["weights"]) == ("random", "checkpoint")
    assert (mask_rcnn["weights_run"], mnc["weights_run"]) == (None, "mnc_vs_successors/a0")
    assert mnc["checkpoint"] == str(run_dir / "work" / "iter_1000.pth")
    assert mnc["post_processing_timed"] == ["postprocessor"] and mnc["infer_post_ms"] > 0
    assert mnc["ratio_infer_to_mask_rcnn"] == pytest.approx(mnc["infer_ms_median"]
                                                            / mask_rcnn["infer_ms_median"])
    assert mnc["ratio_train_to_mask_rcnn"] == pytest.approx(mnc["train_s_per_iter"]
                                                            / mask_rcnn["train_s_per_iter"])
    assert mnc["detections_thr0"] >= mnc["detections"]
    # One timed image and iteration each: the warm-up ones are not among the samples.
    assert (mnc["infer_ms_q1"] == mnc["infer_ms_q3"]
            and mnc["train_s_per_iter_q1"] == mnc["train_s_per_iter_q3"])


def test_bench_checks_its_output_and_arguments_before_any_work(tmp_path, capsys):
    assert main(["bench", "models", "--json", str(tmp_path)]) == 2
    assert "--json" in capsys.readouterr().err
    out = str(tmp_path / "models.json")
    assert main(["bench", "models", "--configs", MASK_RCNN, "--checkpoint", "mnc_3stage_shapes=x.pth",
                 "--json", out]) == 2
    assert "no config named mnc_3stage_shapes" in capsys.readouterr().err
    assert main(["bench", "models", "--configs", "configs/nope.py", "--json", out]) == 2
    assert "configs/nope.py not found" in capsys.readouterr().err
    assert main(["bench", "models", "--configs", MASK_RCNN, "--device", "gpu", "--json", out]) == 2
    assert capsys.readouterr().err == "error: --device gpu: not a torch device (cpu, cuda, cuda:N)\n"
    with pytest.raises(SystemExit):
        main(["bench", "models", "--checkpoint", "no-equals-sign"])
    assert "MODEL=CHECKPOINT" in capsys.readouterr().err
    assert not (tmp_path / "models.json").exists()


def test_inference_entry_point_loads_our_checkpoints_strictly(tmp_path):
    from mnc_bench.inference import load_model

    torch.manual_seed(0)
    predictor = load_model(MASK_RCNN)
    image = np.random.default_rng(0).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    expected = predictor(image).pred_instances
    assert expected.masks.shape[1:] == (96, 80)  # at the image's own size
    checkpoint = tmp_path / "mask_rcnn.pth"
    # mmengine writes numpy scalars into its checkpoints' meta: only the project's allow-list lets them load.
    torch.save({"state_dict": predictor.model.state_dict(), "meta": {"iter": np.int64(5)}}, checkpoint)
    torch.manual_seed(1)
    loaded = load_model(MASK_RCNN, checkpoint)
    torch.testing.assert_close(loaded(image).pred_instances.scores, expected.scores)
    with pytest.raises(UserError, match="does not fit the model"):
        load_model(MNC_3, checkpoint)
    with pytest.raises(UserError, match="not found"):
        load_model(MASK_RCNN, tmp_path / "missing.pth")


_CLOCK = [0.0]  # a fake perf_counter: a head "takes" the seconds it is given


class _Head(nn.Module):
    def predict_by_feat(self, seconds: float) -> str:
        _CLOCK[0] += seconds
        return "detections"


def test_post_processing_timer_finds_plain_and_last_stage_heads(monkeypatch):
    import mnc_bench.bench.models as bench_models

    monkeypatch.setattr(bench_models.time, "perf_counter", lambda: _CLOCK[0])
    cascade = nn.Module()
    cascade.roi_head = nn.Module()
    cascade.roi_head.bbox_head = nn.ModuleList([_Head(), _Head()])  # a cascade predicts with its last stage
    cascade.mask_head = _Head()  # a single-stage model's head (SOLOv2)
    timer = bench_models.PostProcessingTimer(cascade, torch.device("cpu"))
    assert timer.timed == ["roi_head.bbox_head.-1.predict_by_feat", "mask_head.predict_by_feat"]
    assert cascade.roi_head.bbox_head[-1].predict_by_feat(2.0) == "detections"
    cascade.roi_head.bbox_head[0].predict_by_feat(50.0)  # an earlier stage's head is not timed
    cascade.mask_head.predict_by_feat(1.0)
    assert timer.seconds == 3.0


class _FusionHead(nn.Module):
    def predict(self, seconds: float) -> str:
        _CLOCK[0] += seconds
        return "instances"


def test_post_processing_timer_finds_mask2formers_fusion_head(monkeypatch):
    import mnc_bench.bench.models as bench_models

    monkeypatch.setattr(bench_models.time, "perf_counter", lambda: _CLOCK[0])
    mask2former = nn.Module()
    mask2former.panoptic_head = _Head()  # its transformer decoder: network time, not post-processing
    mask2former.panoptic_fusion_head = _FusionHead()
    timer = bench_models.PostProcessingTimer(mask2former, torch.device("cpu"))
    assert timer.timed == ["panoptic_fusion_head.predict"]
    assert mask2former.panoptic_fusion_head.predict(4.0) == "instances"
    assert timer.seconds == 4.0


def test_score_threshold_is_found_where_each_model_keeps_it():
    from mmengine.config import Config

    from mnc_bench.bench.models import score_threshold_key

    two_stage = Config(dict(model=dict(test_cfg=dict(rpn=dict(), rcnn=dict(score_thr=0.05)))))
    single_stage = Config(dict(model=dict(test_cfg=dict(score_thr=0.1, mask_thr=0.5))))
    assert score_threshold_key(two_stage) == ("test_cfg", "rcnn", "score_thr")
    assert score_threshold_key(single_stage) == ("test_cfg", "score_thr")
    # Mask2Former's instance mode has none: it keeps its top max_per_image pairs, i.e. always runs at 0.
    assert score_threshold_key(Config(dict(model=dict(test_cfg=dict(instance_on=True))))) is None


def test_the_bench_module_imports_outside_the_checkout(tmp_path):
    # the default settings name the shipped configs relative to the checkout: they are made (and checked) only
    # when the bench runs without settings, not when the module is imported
    done = subprocess.run([sys.executable, "-c", "import mnc_bench.bench.models"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
