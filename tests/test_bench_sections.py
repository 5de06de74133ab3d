"""`mnc-bench bench data` and `bench eval` at tiny sizes: they run, report what they timed and write JSON."""

from __future__ import annotations

import json

import pytest

from mnc_bench.bench.data import bench_data
from mnc_bench.bench.evaluation import bench_evaluation
from mnc_bench.cli import main


def test_bench_data_times_generating_the_requested_images():
    lines: list[str] = []
    figures = bench_data(3, 2, print_fn=lines.append)
    assert figures["images"] == 5 and figures["shapes_generate_seconds"] > 0
    assert lines == [f"shapes dataset, 3 + 2 images: {figures['shapes_generate_seconds']:.1f} s"]


def test_bench_evaluation_scores_the_workload_with_both_protocols_and_backends():
    lines: list[str] = []
    figures = bench_evaluation(num_images=6, detections_per_image=8, print_fn=lines.append)
    assert figures["images"] == 6 and figures["detections"] == 48 and figures["ground_truths"] >= 6
    for key in ("voc_sds", "voc_mnc", "load_and_validate", "coco_segm_pycocotools",
                "coco_segm_faster_coco_eval"):
        assert figures[f"{key}_seconds"] > 0
    for key in ("voc_sds_mAP@0.5", "voc_mnc_mAP@0.5", "coco_segm_pycocotools_AP"):
        assert 0 < figures[key] <= 1  # 30 % of the detections are jittered ground truths
    assert figures["coco_segm_faster_coco_eval_AP"] == pytest.approx(figures["coco_segm_pycocotools_AP"],
                                                                     abs=1e-6)
    assert len(lines) == len(figures)


def test_bench_data_and_eval_from_the_command_line_write_json(tmp_path, capsys):
    out = tmp_path / "data.json"
    assert main(["bench", "data", "--train", "2", "--val", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["images"] == 3
    out = tmp_path / "eval.json"
    assert main(["bench", "eval", "--images", "3", "--detections", "4", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["detections"] == 12
    assert "voc_sds_mAP@0.5" in capsys.readouterr().out
