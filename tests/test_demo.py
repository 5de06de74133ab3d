"""`mnc-bench demo` (what `make demo` runs): the demo suite through the runner, its table, its report, and the
exit code that says whether every model learned. Here on a one-run stand-in for the shipped suite."""

from __future__ import annotations

import pytest

from mnc_bench import demo


@pytest.mark.slow
def test_demo_runs_its_suite_prints_the_table_writes_the_report_and_flags_a_zero_ap(shapes_dataset, tmp_path,
                                                                                    monkeypatch, write_suite):
    suite = write_suite(tmp_path / "tiny_demo.yaml", shapes_dataset, {
        "train_cfg.max_iters": 2, "train_dataloader.batch_size": 1, "model.test_cfg.rcnn.score_thr": 2.0})
    monkeypatch.setattr(demo, "DEMO_SUITE", str(suite))
    lines: list[str] = []
    code = demo.run_demo(tmp_path / "results", workers=1, report_dir=tmp_path / "report", echo=lines.append)
    text = "\n".join(lines)
    # A score threshold above 1 keeps every detection out: the demo must say the mask AP is zero and fail.
    assert code == 1 and "mask AP is zero for mask_rcnn_shapes" in text
    assert ((tmp_path / "results" / "collect.parquet").is_file()
            and (tmp_path / "results" / "collect.csv").is_file())
    assert "mask_rcnn_shapes" in text and "Demo numbers come from a schedule of minutes" in text
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "report.html").is_file()
