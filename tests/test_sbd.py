"""SBD -> COCO conversion on a tiny SBD/VOC tree written here with scipy.io.savemat."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy.io import savemat

from mnc_bench.cli import main
from mnc_bench.data.check import check_coco_dataset
from mnc_bench.data.sbd import VOC_CLASSES, convert_sbd, read_sbd_instances
from mnc_bench.errors import UserError

H, W = 40, 60


def _instances(seed: int) -> tuple[np.ndarray, list[int]]:
    """A label map with 2 rectangles (instance 1, 2), a void border (255), and their classes."""
    seg = np.zeros((H, W), np.uint8)
    rng = np.random.default_rng(seed)
    x = int(rng.integers(0, 10))
    seg[5:20, 3 + x:20 + x] = 1
    seg[22:38, 30:55] = 2
    seg[21, :] = 255  # VOC-style "void" line: never part of an instance
    return seg, [15, 7 + seed % 3]  # person, car/cat/chair


def _cells(n: int) -> np.ndarray:
    """A MATLAB cell column of empty matrices (SBD's Boundaries; the converter ignores them)."""
    cells = np.empty((n, 1), dtype=object)
    for k in range(n):
        cells[k, 0] = np.zeros((0, 0))
    return cells


def _write_mat(path: Path, struct_name: str, fields: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {struct_name: fields})


def _write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(path)


@pytest.fixture()
def sbd_tree(tmp_path: Path) -> dict[str, Path]:
    """SBD dataset dir + VOC2012 dir. VOC Main lists: train a,b,x ; val c. SBD lists: train a,c ; val b.
    Image x has no SBD masks (as the 185 VOC images SBD lacks)."""
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    names = {"a": "2008_000002", "b": "2008_000003", "c": "2009_000010", "x": "2010_000001"}
    for seed, key in enumerate(("a", "b", "c")):
        seg, cats = _instances(seed)
        _write_mat(sbd / "inst" / f"{names[key]}.mat", "GTinst", {
            "Segmentation": seg,
            "Categories": np.array(cats, np.uint8).reshape(-1, 1),
            "Boundaries": _cells(len(cats)),
        })
        cls_map = np.zeros_like(seg)
        for k, c in enumerate(cats, start=1):
            cls_map[seg == k] = c
        _write_mat(sbd / "cls" / f"{names[key]}.mat", "GTcls", {
            "Segmentation": cls_map,
            "CategoriesPresent": np.array(sorted(set(cats)), np.uint8).reshape(-1, 1),
            "Boundaries": _cells(20)})
        _write_image(sbd / "img" / f"{names[key]}.jpg")
    for key in names:
        _write_image(voc / "JPEGImages" / f"{names[key]}.jpg")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names[k] for k in "abx") + "\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text(names["c"] + "\n")
    (sbd / "train.txt").write_text(f"{names['a']}\n{names['c']}\n")
    (sbd / "val.txt").write_text(f"{names['b']}\n")
    return {"sbd": sbd, "voc": voc, "root": tmp_path, **{k: Path(v) for k, v in names.items()}}


def test_read_instances_ignores_void_and_keeps_order(sbd_tree):
    masks, classes, disagreements = read_sbd_instances(sbd_tree["sbd"] / "inst" / "2008_000002.mat",
                                                       sbd_tree["sbd"] / "cls" / "2008_000002.mat")
    seg, cats = _instances(0)
    assert classes == cats and disagreements == 0
    assert [m.sum() for m in masks] == [(seg == 1).sum(), (seg == 2).sum()]
    assert not any(m[21].any() for m in masks)  # the 255 line belongs to no instance


def test_mnc_split_uses_voc_main_lists_restricted_to_sbd(sbd_tree, tmp_path):
    out = tmp_path / "out"
    summary = convert_sbd(sbd_tree["sbd"], out, voc_root=sbd_tree["voc"], split="mnc")
    assert "1 listed image(s) without SBD masks skipped" in summary
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    val = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert sorted(i["file_name"] for i in train["images"]) == ["2008_000002.jpg", "2008_000003.jpg"]
    assert [i["file_name"] for i in val["images"]] == ["2009_000010.jpg"]
    assert [c["name"] for c in train["categories"]] == list(VOC_CLASSES)
    assert (out / "images").is_symlink() and (out / "images" / "2010_000001.jpg").is_file()
    # The masks come back pixel-exact, with boxes and areas that agree, and the checker accepts the files.
    seg, cats = _instances(0)
    image = next(i for i in train["images"] if i["file_name"] == "2008_000002.jpg")
    assert image["id"] == 2008000002 and (image["height"], image["width"]) == (H, W)
    anns = sorted((a for a in train["annotations"] if a["image_id"] == image["id"]), key=lambda a: a["id"])
    assert [a["category_id"] for a in anns] == cats
    for k, ann in enumerate(anns, start=1):
        decoded = mask_utils.decode({"size": ann["segmentation"]["size"],
                                     "counts": ann["segmentation"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), seg == k)
        ys, xs = np.nonzero(seg == k)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == (seg == k).sum() and ann["iscrowd"] == 0
    for split in ("train", "val"):
        report = check_coco_dataset(out / "annotations" / f"instances_{split}.json",
                                    images_dir=out / "images")
        assert report.ok, report.problems
    assert len(COCO(str(out / "annotations" / "instances_train.json")).getAnnIds()) == 4


def test_sbd_split_uses_sbd_lists_and_sbd_images(sbd_tree, tmp_path):
    out = tmp_path / "out"
    convert_sbd(sbd_tree["sbd"].parent, out, split="sbd", copy_images=True)  # benchmark_RELEASE is found too
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    val = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert sorted(i["file_name"] for i in train["images"]) == ["2008_000002.jpg", "2009_000010.jpg"]
    assert [i["file_name"] for i in val["images"]] == ["2008_000003.jpg"]
    assert not (out / "images").is_symlink()
    assert sorted(p.name for p in (out / "images").iterdir()) == ["2008_000002.jpg", "2008_000003.jpg",
                                                                  "2009_000010.jpg"]


def test_cli_sbd2coco(sbd_tree, tmp_path, capsys):
    out = tmp_path / "cli_out"
    code = main(["data", "sbd2coco", "--sbd", str(sbd_tree["sbd"]),
                 "--voc", str(sbd_tree["root"] / "VOCdevkit"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "train: 2 images, 4 instances" in printed and "val: 1 images, 2 instances" in printed


@pytest.mark.parametrize("damage, message", [
    ("no_categories", "has no field 'Categories'"),
    ("too_few_categories", "instance ids 1..2 in GTinst.Segmentation but 1"),
    ("bad_class", "class 21 outside 1..20"),
    ("not_a_mat", "not a readable MATLAB file"),
])
def test_malformed_mat_is_a_user_error(sbd_tree, tmp_path, damage, message):
    path = sbd_tree["sbd"] / "inst" / "2008_000002.mat"
    seg, cats = _instances(0)
    fields = {"Segmentation": seg, "Categories": np.array(cats, np.uint8).reshape(-1, 1)}
    if damage == "no_categories":
        del fields["Categories"]
    elif damage == "too_few_categories":
        fields["Categories"] = np.array([15], np.uint8).reshape(1, 1)
    elif damage == "bad_class":
        fields["Categories"] = np.array([15, 21], np.uint8).reshape(-1, 1)
    if damage == "not_a_mat":
        path.write_bytes(b"this is not matlab")
    else:
        _write_mat(path, "GTinst", fields)
    with pytest.raises(UserError, match=message) as info:
        convert_sbd(sbd_tree["sbd"], tmp_path / "out", voc_root=sbd_tree["voc"])
    assert "2008_000002.mat" in str(info.value) and "\n" not in str(info.value)


def test_layout_errors_name_what_is_expected(sbd_tree, tmp_path):
    with pytest.raises(UserError, match="expected SBD's benchmark_RELEASE/dataset"):
        convert_sbd(tmp_path / "nowhere", tmp_path / "out", voc_root=sbd_tree["voc"])
    with pytest.raises(UserError, match="--split mnc needs --voc"):
        convert_sbd(sbd_tree["sbd"], tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        convert_sbd(sbd_tree["sbd"], tmp_path / "full", voc_root=sbd_tree["voc"])


def test_class_disagreement_with_gtcls_is_counted_not_fatal(sbd_tree, tmp_path):
    seg, cats = _instances(0)
    wrong = np.zeros_like(seg)
    wrong[seg == 1] = 3  # GTcls says bird where GTinst says person
    wrong[seg == 2] = cats[1]
    _write_mat(sbd_tree["sbd"] / "cls" / "2008_000002.mat", "GTcls",
               {"Segmentation": wrong, "CategoriesPresent": np.array([[3]], np.uint8),
                "Boundaries": _cells(20)})
    summary = convert_sbd(sbd_tree["sbd"], tmp_path / "out", voc_root=sbd_tree["voc"])
    assert "1 instance(s) whose GTcls class disagrees (GTinst kept)" in summary
    train = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert sorted(a["category_id"] for a in train["annotations"]
                  if a["image_id"] == 2008000002) == sorted(cats)
