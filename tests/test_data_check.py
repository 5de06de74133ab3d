import copy
import json
import subprocess
import sys

import pytest

from mnc_bench.data.check import check_coco_dataset


@pytest.fixture(scope="module")
def clean(shapes_dataset):
    return json.loads((shapes_dataset / "annotations/instances_val.json").read_text())


def _check(tmp_path, data, images_dir=None):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return check_coco_dataset(path, images_dir=images_dir)


def test_clean_dataset_passes_with_summary(shapes_dataset, clean, tmp_path):
    report = _check(tmp_path, clean, images_dir=shapes_dataset / "val")
    assert report.ok, report.problems
    assert report.num_images == len(clean["images"]) and report.num_annotations == len(clean["annotations"])
    assert sum(report.per_class.values()) == len(clean["annotations"])
    assert report.summary().startswith("OK")


def _damage_missing_key(d):
    del d["annotations"][1]["bbox"]
    return f"annotation id={d['annotations'][1]['id']}", "missing key"


def _damage_duplicate_image_id(d):
    d["images"][2]["id"] = d["images"][1]["id"]
    return f"image id={d['images'][1]['id']}", "duplicate id"


def _damage_duplicate_annotation_id(d):
    d["annotations"][3]["id"] = d["annotations"][0]["id"]
    return f"annotation id={d['annotations'][0]['id']}", "duplicate id"


def _damage_unknown_image(d):
    d["annotations"][2]["image_id"] = 99999
    return f"annotation id={d['annotations'][2]['id']}", "unknown image_id"


def _damage_unknown_category(d):
    d["annotations"][2]["category_id"] = 77
    return f"annotation id={d['annotations'][2]['id']}", "unknown category_id"


def _damage_short_polygon(d):
    d["annotations"][0]["segmentation"] = [[1, 1, 5, 5]]
    return f"annotation id={d['annotations'][0]['id']}", "polygon 0"


def _damage_rle_size(d):
    d["annotations"][0]["segmentation"]["size"] = [64, 64]
    return f"annotation id={d['annotations'][0]['id']}", "disagrees"


def _damage_bbox_outside(d):
    d["annotations"][1]["bbox"] = [100.0, 100.0, 60.0, 10.0]
    return f"annotation id={d['annotations'][1]['id']}", "outside image"


def _damage_bbox_non_positive(d):
    d["annotations"][1]["bbox"] = [10.0, 10.0, 0.0, 5.0]
    return f"annotation id={d['annotations'][1]['id']}", "non-positive"


def _damage_area(d):
    d["annotations"][4]["area"] = d["annotations"][4]["area"] * 3 + 50
    return f"annotation id={d['annotations'][4]['id']}", "inconsistent"


def _damage_malformed_rle(d):
    d["annotations"][0]["segmentation"]["counts"] = "\x7f\x7f"
    return f"annotation id={d['annotations'][0]['id']}", "RLE"


@pytest.mark.parametrize(
    "damage",
    [
        _damage_missing_key,
        _damage_duplicate_image_id,
        _damage_duplicate_annotation_id,
        _damage_unknown_image,
        _damage_unknown_category,
        _damage_short_polygon,
        _damage_rle_size,
        _damage_bbox_outside,
        _damage_bbox_non_positive,
        _damage_area,
        _damage_malformed_rle,
    ],
)
def test_each_kind_of_damage_is_named_with_its_record(clean, tmp_path, damage):
    data = copy.deepcopy(clean)
    record, words = damage(data)
    report = _check(tmp_path, data)
    assert not report.ok
    assert any(p.startswith(record + ":") and words in p for p in report.problems), report.problems


def test_missing_image_file_is_named(shapes_dataset, clean, tmp_path):
    data = copy.deepcopy(clean)
    data["images"][3]["file_name"] = "nope.png"
    report = _check(tmp_path, data, images_dir=shapes_dataset / "val")
    assert any(p.startswith(f"image id={data['images'][3]['id']}:") and "not found" in p
               for p in report.problems)


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mnc_bench.cli", *args], capture_output=True, text=True)


def test_cli_reports_every_problem_and_exits_non_zero(clean, tmp_path):
    data = copy.deepcopy(clean)
    _damage_unknown_image(data)
    _damage_area(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = _run_cli("data", "check", str(path))
    assert result.returncode == 1
    assert "unknown image_id" in result.stderr and "inconsistent" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout.startswith("FAILED")


@pytest.mark.parametrize("content", ['{"images": [', "not json at all", "[1, 2]"])
def test_cli_invalid_or_truncated_json_is_one_line_error(tmp_path, content):
    path = tmp_path / "broken.json"
    path.write_text(content)
    result = _run_cli("data", "check", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_clean_dataset_exits_zero_with_summary(shapes_dataset):
    result = _run_cli("data", "check", str(shapes_dataset / "annotations/instances_train.json"),
                      "--images", str(shapes_dataset / "train"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK") and "circle" in result.stdout



def test_cli_images_folder_that_is_not_one_is_one_line(shapes_dataset, tmp_path):
    # else every image would be reported missing, one line each
    result = _run_cli("data", "check", str(shapes_dataset / "annotations/instances_val.json"),
                      "--images", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: --images {tmp_path / 'nope'}: not a folder"]
