"""TIDE's error breakdown: each error type made once on a hand-built image, and its dAP checked against the
published definition worked out by hand (which detections the oracle turns into true positives or removes,
AP50 recomputed with COCO's 101-point interpolation); the same numbers for masks and boxes when masks are
boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mnc_bench.cli import main
from mnc_bench.errors import UserError
from mnc_bench.evaluation import evaluate, load_ground_truth, load_predictions
from mnc_bench.evaluation.errors import ERROR_TYPES, TIDE_METRIC_NAMES, tide_metrics

SIZE = 128
# Ground truth: two class-1 squares and one class-2 square; boxes [x, y, w, h].
G1, G2, G3 = (10, 10, 30, 30), (70, 10, 30, 30), (10, 70, 30, 30)
GROUND_TRUTH = [(G1, 1), (G2, 1), (G3, 2)]


def shifted(box: tuple[int, ...], dx: int = 0, dy: int = 0) -> tuple[int, ...]:
    return (box[0] + dx, box[1] + dy, box[2], box[3])


def rle(box: tuple[int, ...]) -> dict:
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    x, y, w, h = box
    mask[y : y + h, x : x + w] = 1
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def dataset(detections: list[tuple[tuple[int, ...], int, float]], crowd: list[tuple[tuple[int, ...], int]] =
()):
    """GROUND_TRUTH (+ crowd regions) on one image, and detections (box, class, score) whose masks fill
    their boxes."""
    annotations = [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": list(b), "area": float(b[2] * b[3]),
                    "segmentation": rle(b), "iscrowd": 0} for i, (b, c) in enumerate(GROUND_TRUTH)]
    annotations += [{"id": 100 + i, "image_id": 1, "category_id": c, "bbox": list(b),
                     "area": float(b[2] * b[3]), "segmentation": rle(b), "iscrowd": 1}
                    for i, (b, c) in enumerate(crowd)]
    gt = {"images": [{"id": 1, "height": SIZE, "width": SIZE, "file_name": "1.png"}],
          "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}], "annotations": annotations}
    results = [{"image_id": 1, "category_id": c, "bbox": list(b), "segmentation": rle(b), "score": s}
               for b, c, s in detections]
    return gt, results


def ap101(hits: list[bool], positives: int) -> float:
    """COCO's AP of one class: hits in descending score order, precision made monotone, read at 101 recall
    levels (first point reaching each level; 0 where none does)."""
    hits_arr = np.asarray(hits, dtype=bool)
    tp, fp = np.cumsum(hits_arr), np.cumsum(~hits_arr)
    recall, precision = tp / positives, tp / np.maximum(tp + fp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in at]))


def map50(classes: dict[int, tuple[list[bool], int]]) -> float:
    """Mean over classes of :func:`ap101`; ``classes``: class -> (hits by score, ground-truth count)."""
    return float(np.mean([ap101(hits, n) for hits, n in classes.values()]))


T1, T2, T3 = (G1, 1, 0.5), (G2, 1, 0.45), (G3, 2, 0.5)  # true positives on each ground truth

# name -> (detections, crowd regions, the error type, AP50 as scored, AP50 with that type fixed by the oracle)
CASES = {
    # Right class, IoU 1/3 with G2, ranked first: the oracle moves it onto G2 (a true positive); T2 absent.
    "loc": ([(shifted(G2, dx=15), 1, 0.9), T1, T3], [], "loc",
            map50({1: ([False, True], 2), 2: ([True], 1)}), map50({1: ([True, True], 2), 2: ([True], 1)})),
    # Class 2 on G2 (IoU 1 with a class-1 object): the oracle relabels it a class-1 true positive.
    "cls": ([(G2, 2, 0.9), T1, T3], [], "cls",
            map50({1: ([True], 2), 2: ([False, True], 1)}), map50({1: ([True, True], 2), 2: ([True], 1)})),
    # Class 2, IoU 1/3 with class-1 G2: wrong class and poorly placed; the oracle removes it.
    "both": ([(shifted(G2, dx=15), 2, 0.9), T1, T2, T3], [], "both",
             map50({1: ([True, True], 2), 2: ([False, True], 1)}), 1.0),
    # A second detection of G1 (IoU 0.875) between the two true positives: removed by the oracle.
    "dupe": ([T1, (shifted(G1, dx=2), 1, 0.47), T2, T3], [], "dupe",
             map50({1: ([True, False, True], 2), 2: ([True], 1)}), 1.0),
    # Nothing there, ranked first: removed by the oracle.
    "bkg": ([((80, 80, 20, 20), 1, 0.9), T1, T2, T3], [], "bkg",
            map50({1: ([False, True, True], 2), 2: ([True], 1)}), 1.0),
    # G2 has no detection: the oracle removes it from the ground truth.
    "miss": ([T1, T3], [], "miss", map50({1: ([True], 2), 2: ([True], 1)}), 1.0),
}


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_error_type_against_the_published_definition(case, iou_type):
    detections, crowd, error, before, after = CASES[case]
    gt, results = dataset(detections, crowd)
    ground_truth = load_ground_truth(gt)
    got = tide_metrics(ground_truth, load_predictions(results, ground_truth), iou_type)
    assert before < after  # each case costs AP
    assert got["base_AP50"] == pytest.approx(before, abs=1e-9)
    assert got[f"dAP_{error}"] == pytest.approx(after - before, abs=1e-9)
    for other in ERROR_TYPES:
        if other != error:
            assert got[f"dAP_{other}"] == pytest.approx(0.0, abs=1e-9), other


def test_false_positive_and_false_negative_summaries():
    """The loc case: FP ranks every false positive last; FN removes the one ground truth left unmatched."""
    detections, crowd, *_ = CASES["loc"]
    gt, results = dataset(detections, crowd)
    ground_truth = load_ground_truth(gt)
    got = tide_metrics(ground_truth, load_predictions(results, ground_truth), "segm")
    before = got["base_AP50"]
    assert got["dAP_FP"] == pytest.approx(map50({1: ([True, False], 2), 2: ([True], 1)}) - before, abs=1e-9)
    assert got["dAP_FN"] == pytest.approx(map50({1: ([False, True], 1), 2: ([True], 1)}) - before, abs=1e-9)


def test_detection_in_a_crowd_region_is_ignored():
    crowd = [((60, 60, 60, 60), 1)]
    gt, results = dataset([((70, 70, 20, 20), 1, 0.9), T1, T2, T3], crowd)
    ground_truth = load_ground_truth(gt)
    got = tide_metrics(ground_truth, load_predictions(results, ground_truth), "segm")
    assert got["base_AP50"] == pytest.approx(1.0)
    assert got["dAP_bkg"] == 0.0


def test_evaluate_and_cli_give_stable_keys(tmp_path, capsys):
    gt, results = dataset(CASES["loc"][0])
    keys = evaluate(gt, results, metric="tide", iou_type=("segm", "bbox"))
    assert list(keys) == [f"tide/{kind}/{name}" for kind in ("segm", "bbox") for name in TIDE_METRIC_NAMES]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                 "--metric", "tide", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tide/segm/dAP_loc"] == pytest.approx(keys["tide/segm/dAP_loc"])
    assert "tide/bbox/base_AP50" not in printed  # --iou-type segm by default


def test_masks_needed_for_masks():
    gt, results = dataset([T1])
    ground_truth = load_ground_truth(gt)
    without_masks = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    boxes = load_predictions(without_masks, ground_truth)
    with pytest.raises(UserError, match="TIDE on masks needs masks"):
        tide_metrics(ground_truth, boxes, "segm")
    assert tide_metrics(ground_truth, boxes, "bbox")["dAP_miss"] > 0


def test_each_type_is_fixed_alone_not_on_top_of_the_others():
    """A background error and a missed object together: dAP_miss is measured with the background error still
    there (fixing both at once would give more)."""
    gt, results = dataset([((80, 80, 20, 20), 1, 0.9), T1, T3])
    ground_truth = load_ground_truth(gt)
    got = tide_metrics(ground_truth, load_predictions(results, ground_truth), "segm")
    before = map50({1: ([False, True], 2), 2: ([True], 1)})
    assert got["dAP_bkg"] == pytest.approx(map50({1: ([True], 2), 2: ([True], 1)}) - before, abs=1e-9)
    assert got["dAP_miss"] == pytest.approx(map50({1: ([False, True], 1), 2: ([True], 1)}) - before, abs=1e-9)
