"""The plain-text tables of ``mnc-bench bench models``, from its results (a saved JSON prints the same)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _number(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(line, widths)))
             for line in (header, *rows)]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def _inference_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for record in records:
        for suffix, ratio in (("", "ratio_infer_to_mask_rcnn"), ("_thr0", "ratio_infer_thr0_to_mask_rcnn")):
            threshold = record["score_thr"] if suffix == "" else 0.0
            rows.append([
                record["model"] if suffix == "" else "",
                f"{threshold:g}",
                _number(record[f"detections{suffix}"], ".1f"),
                _number(record[f"infer_ms_median{suffix}"], ".1f"),
                f"{record[f'infer_ms_q1{suffix}']:.1f}-{record[f'infer_ms_q3{suffix}']:.1f}",
                _number(record[f"infer_pre_ms{suffix}"], ".1f"),
                _number(record[f"infer_net_ms{suffix}"], ".1f"),
                _number(record[f"infer_post_ms{suffix}"], ".1f"),
                _number(record[ratio], ".2f") + ("x" if record[ratio] is not None else ""),
                _number(record[f"gflops{suffix}"], ".2f"),
                _number(record[f"infer_gflops_per_s{suffix}"], ".1f"),
                _number(100 * record[f"infer_share_of_peak{suffix}"], ".1f"),
                _number(record[f"infer_peak_rss_mb{suffix}"], ".0f"),
            ])
    return rows


def _training_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for record in records:
        ratio = record.get("ratio_train_to_mask_rcnn")
        rows.append([
            record["model"],
            str(record["train_batch"]),
            _number(record["train_s_per_iter"], ".3f"),
            f"{record['train_s_per_iter_q1']:.3f}-{record['train_s_per_iter_q3']:.3f}",
            _number(record["train_img_per_s"], ".2f"),
            _number(record["train_data_s_per_iter"], ".3f"),
            _number(ratio, ".2f") + ("x" if ratio is not None else ""),
            _number(record["train_gflops_per_iter"], ".1f"),
            _number(record["gflops_per_s"], ".1f"),
            _number(100 * record["share_of_peak"], ".1f"),
            _number(record["params"] / 1e6, ".2f"),
            _number(record["peak_rss_mb"], ".0f"),
        ])
    return rows


def format_tables(results: dict[str, Any]) -> list[str]:
    """Per input size: an inference table (one row per model and score threshold) and a training table."""
    machine, settings = results["machine"], results["settings"]
    lines = []
    for size, records in results["by_size"].items():
        weights = ", ".join(sorted({f"{r['model']}: {r['weights']}"
                                    + (f" of {r['weights_run']}" if r.get("weights_run") else "")
                                    for r in records}))
        lines += ["", f"== inference, {size} px, batch 1, median of {settings['repeats']} images "
                      f"({weights}) =="]
        header = ["model", "score_thr", "det/img", "ms/img", "IQR", "pre", "net", "post", "vs MaskRCNN",
                  "GFLOPs/img", "GFLOP/s", "% peak", "peak MB"]
        lines += _table(header, _inference_rows(records))
        if settings["train_iters"] and records and "train_s_per_iter" in records[0]:
            lines += ["", f"== training, {size} px, median of {settings['train_iters']} iterations =="]
            header = ["model", "batch", "s/iter", "IQR", "img/s", "data s", "vs MaskRCNN", "GFLOP/iter",
                      "GFLOP/s", "% peak", "params M", "peak MB"]
            lines += _table(header, _training_rows(records))
        random_mnc = sorted(r["model"] for r in records
                            if r.get("model_type") == "MNC" and r["weights"] == "random")
        if random_mnc:
            lines.append(f"note: {', '.join(random_mnc)} ran with random weights: MNC's ratios then mislead "
                         "(a random model keeps its whole detection budget above the score threshold, and "
                         "its training step follows the proposals and labels the weights produce); bench "
                         "trained weights (--checkpoint, or --weights trained with finished suite runs) to "
                         "compare")
        proposals = {r["proposals"] for r in records}
        if len(proposals) > 1:
            lines.append(f"note: the models use different proposal counts: {sorted(map(str, proposals))}")
    lines += [
        "",
        f"machine: {machine['cpu']}, {machine['threads']} torch threads, torch {machine['torch']}"
        + (f", {machine['gpu']}" if machine.get("gpu") else "")
        + f"; load average {machine['load_avg_1min_start']:.2f} at start, "
        f"{machine['load_avg_1min_end']:.2f} at end",
        f"dense float32 matmul peak measured in this run: {machine['matmul_peak_gflops']:.1f} GFLOP/s; "
        "% peak = achieved GFLOP/s / that peak",
        f"FLOPs: {settings['flop_counter']}; not counted: {', '.join(settings['flops_not_counted'])}",
        "ms/img = pre (test pipeline + data preprocessor) + net + post (NMS, mask voting, pasting); "
        "data s = packing one training batch (inside a real iteration with num_workers=0)",
        f"peak MB: {settings['memory']}; ratios: to the {settings['reference_model_type']} row, same size "
        "and threshold setting",
    ]
    return lines
