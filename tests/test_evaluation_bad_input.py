"""Every kind of bad input is a UserError naming the record and the field, never a crash inside
pycocotools or a silently wrong number; the CLI turns it into one `error:` line and exit code 2."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mnc_bench.data.segmentation import compressed_counts_valid
from mnc_bench.errors import UserError
from mnc_bench.evaluation import evaluate, evaluate_proposals

H, W = 20, 30


def square_rle(top: int, left: int, side: int = 6) -> dict:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[top : top + side, left : left + side] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": rle["counts"].decode()}


GT = {
    "images": [{"id": 1, "height": H, "width": W}, {"id": 2, "height": H, "width": W}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": square_rle(2, 2), "area": 36.0,
         "bbox": [2, 2, 6, 6], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "segmentation": [[10, 10, 16, 10, 16, 16, 10, 16]],
         "area": 36.0, "bbox": [10, 10, 6, 6], "iscrowd": 0},
    ],
}


def good_results() -> list[dict]:
    return [
        {"image_id": 1, "category_id": 1, "segmentation": square_rle(2, 2), "bbox": [2, 2, 6, 6],
         "score": 0.9},
        {"image_id": 2, "category_id": 2, "segmentation": square_rle(10, 10), "bbox": [10, 10, 6, 6],
         "score": 0.8},
        {"image_id": 2, "category_id": 1, "segmentation": square_rle(0, 0), "bbox": [0, 0, 6, 6],
         "score": 0.7},
    ]


def corrupt_counts() -> str:
    counts = square_rle(0, 0)["counts"]
    return counts[:-1] + chr(ord(counts[-1]) + 1)  # last run one pixel too long


# (field or value to put into record 2, expected words of the message)
BAD_RECORDS = {
    "unknown image": ({"image_id": 99}, ["record 2", "'image_id' 99"]),
    "image id not an int": ({"image_id": "2"}, ["record 2", "'image_id' '2'"]),
    "unknown category": ({"category_id": 5}, ["record 2", "'category_id' 5"]),
    "NaN score": ({"score": float("nan")}, ["record 2", "'score'"]),
    "inf score": ({"score": float("inf")}, ["record 2", "'score'"]),
    "string score": ({"score": "0.5"}, ["record 2", "'score'"]),
    "bool score": ({"score": True}, ["record 2", "'score'"]),
    "RLE size differs from image": ({"segmentation": {"size": [W, H], "counts": square_rle(0, 0)["counts"]}},
                                    ["record 2", "'segmentation'", "size"]),
    "RLE runs do not cover image": ({"segmentation": {"size": [H, W], "counts": corrupt_counts()}},
                                    ["record 2", "'segmentation'", "corrupt"]),
    "RLE garbage characters": ({"segmentation": {"size": [H, W], "counts": "not an RLE!"}},
                               ["record 2", "'segmentation'", "corrupt"]),
    # "o" (code 63) sets the "more characters follow" bit, but the string ends.
    "RLE truncated mid-number": ({"segmentation": {"size": [H, W], "counts": corrupt_counts()[:-1] + "o"}},
                                 ["record 2", "'segmentation'", "corrupt"]),
    "RLE without counts": ({"segmentation": {"size": [H, W]}}, ["record 2", "'segmentation'", "counts"]),
    "RLE counts a number": ({"segmentation": {"size": [H, W], "counts": 5}}, ["record 2", "'counts'"]),
    "uncompressed RLE wrong total": ({"segmentation": {"size": [H, W], "counts": [10, 5]}},
                                     ["record 2", "'segmentation'", str(H * W)]),
    "polygon with 2 points": ({"segmentation": [[1, 1, 5, 5]]}, ["record 2", "'segmentation'", "polygon 0"]),
    "polygon odd length": ({"segmentation": [[1, 1, 5, 5, 9]]}, ["record 2", "'segmentation'", "polygon 0"]),
    "polygon with NaN": ({"segmentation": [[1, 1, 5, float("nan"), 9, 9]]}, ["record 2", "polygon 0"]),
    "polygon of strings": ({"segmentation": [["1", "1", "5", "5", "9", "9"]]}, ["record 2", "polygon 0"]),
    "polygon far outside": ({"segmentation": [[1, 1, 5e9, 5, 9, 9]]}, ["record 2", "polygon 0", "outside"]),
    "empty polygon list": ({"segmentation": []}, ["record 2", "'segmentation'", "empty"]),
    "segmentation a string": ({"segmentation": "abc"}, ["record 2", "'segmentation'"]),
    "bbox of 3 numbers": ({"bbox": [1, 2, 3]}, ["record 2", "'bbox'"]),
    "bbox with inf": ({"bbox": [1, 2, float("inf"), 3]}, ["record 2", "'bbox'"]),
    "bbox negative width": ({"bbox": [1, 2, -3, 3]}, ["record 2", "'bbox'", "negative"]),
}


@pytest.mark.parametrize("change, expected", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_bad_record_names_record_and_field(change, expected):
    results = good_results()
    results[2].update(change)
    with pytest.raises(UserError) as info:
        evaluate(GT, results, metric="all")
    message = str(info.value)
    assert "\n" not in message
    for word in expected:
        assert word in message, (word, message)


@pytest.mark.parametrize("key", ["image_id", "category_id", "score", "segmentation"])
def test_missing_key_names_record_and_key(key):
    results = good_results()
    del results[2][key]
    with pytest.raises(UserError, match=rf"record 2\b.*missing '{key}'"):
        evaluate(GT, results, metric="all")


def test_missing_bbox_without_mask_is_named():
    results = [{k: v for k, v in r.items() if k != "segmentation"} for r in good_results()]
    del results[1]["bbox"]
    with pytest.raises(UserError, match=r"record 1 \(image_id 2\): missing 'bbox'"):
        evaluate(GT, results, metric="coco", iou_type="bbox")


def test_box_only_results_cannot_give_mask_metrics():
    results = [{k: v for k, v in r.items() if k != "segmentation"} for r in good_results()]
    with pytest.raises(UserError, match="no 'segmentation'"):
        evaluate(GT, results, metric="voc_sds")
    assert evaluate(GT, results, metric="coco", iou_type="bbox")["coco/bbox/AP50"] == pytest.approx(1.0)


def test_record_not_an_object():
    results = good_results()
    results[1] = [1, 2, 3]
    with pytest.raises(UserError, match="record 1: expected an object"):
        evaluate(GT, results)


def test_valid_inputs_pass(tmp_path):
    # The baseline the bad cases differ from: all three formats of masks are accepted.
    results = good_results()
    results[1]["segmentation"] = [[10, 10, 16, 10, 16, 16, 10, 16]]  # polygon
    results[2]["segmentation"] = {"size": [H, W], "counts": square_rle(0, 0)["counts"].encode()}  # bytes
    results.append({**results[0], "segmentation": {"size": [H, W], "counts": [H * W]}})  # uncompressed
    scores = evaluate(GT, results, metric="all")
    assert scores["voc_sds/mAP@0.5"] == pytest.approx(1.0)


def test_invalid_json_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('[{"image_id": 1,')
    with pytest.raises(UserError, match=r"results.json: invalid JSON"):
        evaluate(GT, path)


def test_json_not_a_list(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"image_id": 1}')
    with pytest.raises(UserError, match="expected a JSON list"):
        evaluate(GT, path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        evaluate(tmp_path / "nope.json", [])


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda gt: gt["annotations"][1].update(id=0), "'id' must be a unique non-zero integer"),
        (lambda gt: gt["annotations"][1].update(id=1), "'id' must be a unique non-zero integer"),
        (lambda gt: gt["annotations"][1].pop("area"), "annotations[1]: missing 'area'"),
        (lambda gt: gt["annotations"][1].update(image_id=7), "annotation id 2: 'image_id' 7"),
        (lambda gt: gt["annotations"][1].update(segmentation=[[1, 2, 3, 4]]),
         "annotation id 2: 'segmentation'"),
        (lambda gt: gt["images"][1].pop("height"), "images[1]: missing 'height'"),
        (lambda gt: gt["categories"][1].update(name="a"), "categories[1] (id 2): 'name' must be a unique"),
        (lambda gt: gt.pop("categories"), "'categories' must be a list"),
    ],
)
def test_bad_ground_truth_is_named(change, expected):
    gt = copy.deepcopy(GT)
    change(gt)
    with pytest.raises(UserError) as info:
        evaluate(gt, good_results(), metric="all")
    assert expected in str(info.value)


def test_bad_proposal_arrays():
    with pytest.raises(UserError, match="image_id 5: not an image"):
        evaluate_proposals(GT, {5: np.zeros((0, 5))})
    with pytest.raises(UserError, match=r"image_id 1: expected an \(N, 5\) array"):
        evaluate_proposals(GT, {1: np.zeros((3, 4))})
    with pytest.raises(UserError, match="image_id 1: NaN or infinite"):
        evaluate_proposals(GT, {1: np.array([[0, 0, 5, 5, np.nan]])})
    with pytest.raises(UserError, match="image_id 1: a box has x2 < x1"):
        evaluate_proposals(GT, {1: (np.array([[5, 0, 1, 5]]), np.array([0.5]))})
    with pytest.raises(UserError, match=r"record 0 \(image_id 1\): 'score'"):
        evaluate_proposals(GT, [{"image_id": 1, "bbox": [0, 0, 5, 5], "score": None}])


def test_unknown_metric_backend_or_iou_type():
    with pytest.raises(UserError, match="unknown metric 'voc'"):
        evaluate(GT, [], metric="voc")
    with pytest.raises(UserError, match="unknown IoU type 'mask'"):
        evaluate(GT, [], iou_type="mask")
    with pytest.raises(UserError, match="unknown COCO backend 'detectron'"):
        evaluate(GT, [], metric="coco", backend="detectron")


def test_compressed_counts_check_agrees_with_a_reference_decoder():
    # A pure-Python transcription of pycocotools' rleFrString, run on valid and damaged strings.
    def reference(counts: bytes, pixels: int) -> bool:
        runs, p = [], 0
        while p < len(counts):
            x = k = 0
            more = True
            while more:
                if p >= len(counts) or not 48 <= counts[p] < 112:
                    return False
                c = counts[p] - 48
                x |= (c & 0x1F) << 5 * k
                more = bool(c & 0x20)
                p, k = p + 1, k + 1
                if not more and c & 0x10:
                    x |= -1 << 5 * k
            if k > 6:
                return False
            runs.append(x + (runs[-2] if len(runs) > 2 else 0))
        return min(runs, default=0) >= 0 and sum(runs) == pixels

    rng = np.random.default_rng(0)
    strings, pixels = [], []
    for _ in range(400):
        h, w = rng.integers(1, 40, size=2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        counts = bytearray(mask_utils.encode(np.asfortranarray(mask))["counts"])
        damage = rng.integers(5)
        if damage == 1 and counts:
            counts[rng.integers(len(counts))] = rng.integers(40, 120)
        elif damage == 2:
            counts += bytes([rng.integers(48, 112)])
        elif damage == 3 and counts:
            del counts[rng.integers(len(counts))]
        strings.append(bytes(counts))
        pixels.append(int(h * w))
    expected = np.array([reference(s, n) for s, n in zip(strings, pixels)])
    assert 100 < expected.sum() < 350  # both outcomes well represented
    np.testing.assert_array_equal(compressed_counts_valid(strings, np.array(pixels)), expected)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mnc_bench.cli", "evaluate", *args]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture
def gt_file(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(GT))
    return path


@pytest.mark.parametrize(
    "results_text, expected",
    [
        ("[{", "invalid JSON"),
        (json.dumps([*good_results()[:2], {**good_results()[2], "category_id": 42}]),
         "record 2 (image_id 2)"),
        (json.dumps([*good_results()[:2], {**good_results()[2], "score": "high"}]), "'score'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(gt_file, tmp_path, results_text, expected):
    pred = tmp_path / "results.json"
    pred.write_text(results_text)
    result = run_cli("--gt", str(gt_file), "--pred", str(pred))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert result.stdout == ""


def test_cli_json_and_table(gt_file, tmp_path):
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(good_results()))
    result = run_cli("--gt", str(gt_file), "--pred", str(pred), "--json", "--backend", "faster_coco_eval")
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)  # stdout is exactly one JSON object: no pycocotools chatter
    assert numbers == json.loads(json.dumps(numbers))
    assert numbers["voc_sds/mAP@0.5"] == 1.0 and numbers["voc_mnc/AP@0.7/b"] == 1.0
    assert numbers["coco/segm/APm"] is None  # undefined (no medium objects): null, not NaN
    assert numbers["coco/segm/AP50"] == pytest.approx(1.0)
    table = run_cli("--gt", str(gt_file), "--pred", str(pred), "--metric", "voc_mnc")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["voc_mnc", "AP@0.5", "AP@0.7", "AP_vol"]
    assert "coco" not in table.stdout
