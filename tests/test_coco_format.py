"""One set of COCO rules: `data check` (every problem listed) and the evaluators (first problem raised) agree
on what is wrong with a ground truth and say it in the same words; results files differ only where the
format does (no area, empty boxes allowed)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mnc_bench.data.check import check_coco_dataset
from mnc_bench.data.coco_format import CollectProblems, RaiseOnFirst, TooManyProblems, check_instances
from mnc_bench.errors import UserError
from mnc_bench.evaluation import evaluate, load_ground_truth

H, W = 20, 30


def rle(top: int, left: int, side: int = 6) -> dict:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[top : top + side, left : left + side] = 1
    return {"size": [H, W], "counts": mask_utils.encode(np.asfortranarray(mask))["counts"].decode()}


def corrupt_counts() -> str:
    counts = rle(0, 0)["counts"]
    return counts[:-1] + chr(ord(counts[-1]) + 1)  # last run one pixel too long


GT = {
    "images": [{"id": 1, "height": H, "width": W, "file_name": "1.png"},
               {"id": 2, "height": H, "width": W, "file_name": "2.png"}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle(2, 2), "area": 36,
         "bbox": [2, 2, 6, 6], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "segmentation": rle(10, 10), "area": 36,
         "bbox": [10, 10, 6, 6], "iscrowd": 0},
    ],
}
RESULTS = [
    {"image_id": 1, "category_id": 1, "segmentation": rle(2, 2), "bbox": [2, 2, 6, 6], "score": 0.9},
    {"image_id": 2, "category_id": 2, "segmentation": rle(10, 10), "bbox": [10, 10, 6, 6], "score": 0.8},
]


def _second(field: str, value):
    return lambda gt: gt["annotations"][1].update({field: value})


# Damage to annotation id 2 (or category id 2) -> the message body both readers must give.
SAME_BODY = {
    "zero-width bbox": (_second("bbox", [10, 10, 0, 6]),
                        "'bbox' [10, 10, 0, 6] has a non-positive width or height"),
    "negative bbox": (_second("bbox", [10, 10, -2, 6]),
                      "'bbox' [10, 10, -2, 6] has a non-positive width or height"),
    "bbox outside the image": (_second("bbox", [26, 10, 6, 6]),
                               "'bbox' [26, 10, 6, 6] lies outside image id 2 (30x20)"),
    "iscrowd true": (_second("iscrowd", True), "'iscrowd' must be 0 or 1, got True"),
    "iscrowd 2": (_second("iscrowd", 2), "'iscrowd' must be 0 or 1, got 2"),
    "area 0": (_second("area", 0), "'area' must be a positive finite number, got 0"),
    "area NaN": (_second("area", float("nan")), "'area' must be a positive finite number, got nan"),
    "area far from the mask": (_second("area", 80), "'area' 80 is inconsistent with its mask (36 pixels)"),
    "empty mask": (_second("segmentation", {"size": [H, W], "counts": [H * W]}),
                   "'segmentation' is empty (0 pixels)"),
    "corrupt RLE counts": (_second("segmentation", {"size": [H, W], "counts": corrupt_counts()}),
                           "'segmentation': RLE 'counts' is corrupt "
                           "(its runs do not cover the image exactly)"),
    "RLE of another size": (_second("segmentation", {"size": [W, H], "counts": rle(0, 0)["counts"]}),
                            "'segmentation': RLE 'size' [30, 20] disagrees with the image size [20, 30]"),
    "unknown image": (_second("image_id", 9), "'image_id' 9 is not in 'images' (unknown image_id)"),
    "unknown category": (_second("category_id", 5),
                         "'category_id' 5 is not in 'categories' (unknown category_id)"),
    "duplicate category name": (lambda gt: gt["categories"][1].update(name="a"),
                                "'name' must be a unique string, got 'a'"),
}


def _data_check(tmp_path, data) -> list[str]:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return check_coco_dataset(path).problems


def _evaluator_error(tmp_path, data, results=RESULTS) -> str:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as info:
        evaluate(path, copy.deepcopy(results), metric="all")
    return str(info.value)


@pytest.mark.parametrize("damage, body", SAME_BODY.values(), ids=SAME_BODY.keys())
def test_data_check_and_evaluator_give_the_same_verdict(tmp_path, damage, body):
    gt = copy.deepcopy(GT)
    damage(gt)
    kind = "category" if "name" in body else "annotation"
    assert _data_check(tmp_path, gt) == [f"{kind} id=2: {body}"]
    message = _evaluator_error(tmp_path, gt)
    where = "categories[1] (id 2)" if kind == "category" else "annotation id 2"
    assert message == f"{tmp_path / 'gt.json'}: {where}: {body}"


def test_clean_ground_truth_passes_both(tmp_path):
    assert _data_check(tmp_path, GT) == []
    assert evaluate(GT, RESULTS, metric="voc_sds")["voc_sds/mAP@0.5"] == pytest.approx(1.0)


@pytest.mark.parametrize("key", ["iscrowd", "area", "bbox", "image_id"])
def test_a_missing_key_is_refused_by_both(tmp_path, key):
    gt = copy.deepcopy(GT)
    del gt["annotations"][1][key]
    assert _data_check(tmp_path, gt) == [f"annotation id=2: missing key(s) {key!r}"]
    assert _evaluator_error(tmp_path, gt).endswith(f"annotations[1]: missing {key!r}")


def test_what_only_training_needs_is_required_by_data_check_only(tmp_path):
    # Evaluation ground truth may be box-only and carry no file names; a training dataset may not.
    gt = copy.deepcopy(GT)
    del gt["images"][0]["file_name"], gt["annotations"][0]["segmentation"]
    assert _data_check(tmp_path, gt) == ["image id=1: missing key(s) 'file_name'",
                                         "annotation id=1: missing key(s) 'segmentation'"]
    boxes = [{k: v for k, v in r.items() if k != "segmentation"} for r in RESULTS]
    assert evaluate(gt, boxes, metric="coco", iou_type="bbox")["coco/bbox/AP50"] == pytest.approx(1.0)
    with pytest.raises(UserError, match=r"annotation id 1: missing 'segmentation'"):
        evaluate(gt, RESULTS, metric="coco", iou_type="segm")


def test_results_follow_the_same_mask_rules_but_may_have_empty_boxes():
    # A corrupt RLE is the same problem in a results file as in ground truth, said the same way.
    results = copy.deepcopy(RESULTS)
    results[1]["segmentation"] = {"size": [H, W], "counts": corrupt_counts()}
    with pytest.raises(UserError) as info:
        evaluate(GT, results)
    assert str(info.value) == ("predictions: record 1 (image_id 2): 'segmentation': RLE 'counts' is corrupt "
                               "(its runs do not cover the image exactly)")
    # An empty predicted box is a poor prediction, not a malformed record (a ground-truth one is refused).
    results = copy.deepcopy(RESULTS)
    results.append({"image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [H * W]},
                    "bbox": [0, 0, 0, 0], "score": 0.1})
    assert evaluate(GT, results, metric="coco", iou_type="bbox")["coco/bbox/AP50"] == pytest.approx(1.0)
    results[-1]["bbox"] = [0, 0, -1, 0]
    with pytest.raises(UserError, match=r"record 2 \(image_id 1\): 'bbox' has a negative width or height"):
        evaluate(GT, results)


@pytest.mark.parametrize("text", ['{"images": [', "[1, 2", "\ufeff{}"])
def test_unreadable_json_is_worded_the_same_by_every_reader(tmp_path, text):
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    messages = []
    for read in (lambda: check_coco_dataset(path), lambda: load_ground_truth(path),
                 lambda: evaluate(GT, path)):
        with pytest.raises(UserError) as info:
            read()
        messages.append(str(info.value))
    assert messages[0] == messages[1] == messages[2]
    assert messages[0].startswith(f"{path}: invalid JSON at line 1 column ")


def test_missing_file_is_worded_the_same_by_every_reader(tmp_path):
    path = tmp_path / "nope.json"
    messages = []
    for read in (lambda: check_coco_dataset(path), lambda: load_ground_truth(path),
                 lambda: evaluate(GT, path)):
        with pytest.raises(UserError) as info:
            read()
        messages.append(str(info.value))
    assert messages == [f"{path}: no such file"] * 3


def test_collect_lists_every_problem_and_raise_stops_at_the_first():
    gt = copy.deepcopy(GT)
    gt["annotations"][0].update(area=0, iscrowd=True)
    gt["annotations"][1].update(bbox=[1, 1, 0, 0])
    out = CollectProblems()
    found = check_instances(gt, "gt", out, dataset=True)
    assert out.lines == [
        "annotation id=1: 'iscrowd' must be 0 or 1, got True",
        "annotation id=1: 'area' must be a positive finite number, got 0",
        "annotation id=2: 'bbox' [1, 1, 0, 0] has a non-positive width or height",
    ]
    assert found.annotations == [] and found.num_annotations == 2
    with pytest.raises(UserError) as info:
        check_instances(gt, "gt", RaiseOnFirst("gt"), dataset=False)
    assert str(info.value) == "gt: annotation id 1: 'iscrowd' must be 0 or 1, got True"
    limited = CollectProblems(limit=2)
    with pytest.raises(TooManyProblems):
        check_instances(gt, "gt", limited, dataset=True)
    assert len(limited.lines) == 2 and limited.truncated


def test_annotations_of_an_image_with_a_bad_size_are_not_reported_again(tmp_path):
    gt = copy.deepcopy(GT)
    gt["images"][1]["height"] = 0
    assert _data_check(tmp_path, gt) == ["image id=2: 'height' must be a positive integer, got 0"]


def test_a_ground_truth_with_hundreds_of_annotations(tmp_path):
    # pycocotools' batch `area` breaks from 256 RLEs on (numpy 2); both readers must still work.
    gt = copy.deepcopy(GT)
    gt["annotations"] = [{**gt["annotations"][0], "id": k + 1} for k in range(300)]
    assert _data_check(tmp_path, gt) == []
    assert len(load_ground_truth(gt).rles) == 300
