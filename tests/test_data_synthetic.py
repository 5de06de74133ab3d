import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mnc_bench.data.synthetic import CATEGORIES, ShapesConfig, write_shapes_dataset
from mnc_bench.errors import UserError


def test_same_seed_gives_byte_identical_dataset(tmp_path):
    config = ShapesConfig(seed=7)
    write_shapes_dataset(tmp_path / "a", num_train=6, num_val=3, config=config, workers=1)
    write_shapes_dataset(tmp_path / "b", num_train=6, num_val=3, config=config, workers=2)
    for split in ("train", "val"):
        name = f"annotations/instances_{split}.json"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        for png in sorted((tmp_path / "a" / split).glob("*.png")):
            assert png.read_bytes() == (tmp_path / "b" / split / png.name).read_bytes()


def test_different_seed_gives_different_data(tmp_path):
    write_shapes_dataset(tmp_path / "a", num_train=4, num_val=0, config=ShapesConfig(seed=1), workers=1)
    write_shapes_dataset(tmp_path / "b", num_train=4, num_val=0, config=ShapesConfig(seed=2), workers=1)
    a = (tmp_path / "a/annotations/instances_train.json").read_bytes()
    assert a != (tmp_path / "b/annotations/instances_train.json").read_bytes()


def test_annotations_match_their_masks_and_load_in_pycocotools(shapes_dataset):
    for split in ("train", "val"):
        coco = COCO(str(shapes_dataset / f"annotations/instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
        assert len(coco.getAnnIds()) > 0
        for ann in coco.loadAnns(coco.getAnnIds()):
            image = coco.imgs[ann["image_id"]]
            mask = coco.annToMask(ann).astype(bool)
            assert mask.shape == (image["height"], image["width"])
            assert ann["area"] == mask.sum() > 0
            ys, xs = np.nonzero(mask)
            x0, y0, w, h = ann["bbox"]
            assert (x0, y0, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert ann["iscrowd"] == 0 and ann["category_id"] in coco.cats


def test_images_are_rgb_pngs_of_the_configured_size_with_1_to_6_objects(shapes_dataset):
    data = json.loads((shapes_dataset / "annotations/instances_train.json").read_text())
    per_image = {img["id"]: 0 for img in data["images"]}
    for ann in data["annotations"]:
        per_image[ann["image_id"]] += 1
    assert max(per_image.values()) <= 6
    for img in data["images"]:
        pixels = np.asarray(Image.open(shapes_dataset / "train" / img["file_name"]))
        assert pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
        assert pixels.std() > 10  # textured, not a flat canvas


def test_visible_masks_do_not_overlap_and_span_size_buckets(tmp_path):
    write_shapes_dataset(tmp_path / "d", num_train=200, num_val=0, workers=2)
    coco = COCO(str(tmp_path / "d/annotations/instances_train.json"))
    areas = np.array([a["area"] for a in coco.dataset["annotations"]])
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any() and (areas >= 96**2).any()
    counts = np.bincount([a["category_id"] for a in coco.dataset["annotations"]], minlength=5)[1:]
    assert (counts > 0.15 * counts.sum()).all()  # every class well represented
    for image_id in list(coco.imgs)[:50]:
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]
        if masks:
            assert np.stack(masks).sum(axis=0).max() <= 1  # visible masks after occlusion are disjoint


def test_refuses_to_overwrite_a_non_empty_directory(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        write_shapes_dataset(tmp_path / "out", num_train=1, num_val=1)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    import mnc_bench.data.synthetic as synthetic

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "summarize", explode)
    with pytest.raises(KeyboardInterrupt):
        write_shapes_dataset(tmp_path / "out", num_train=2, num_val=1, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_rle_round_trip(shapes_dataset):
    data = json.loads((shapes_dataset / "annotations/instances_val.json").read_text())
    ann = data["annotations"][0]
    rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
    assert mask_utils.area(rle) == ann["area"]
