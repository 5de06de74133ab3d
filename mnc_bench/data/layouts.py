"""The shapes dataset in the file layout of COCO 2017 or of SBD converted for VOC: what the full-size configs
read, to rehearse their suites without their data (``mnc-bench data synth --layout coco|voc``, then
``mnc-bench run SUITE --smoke --cfg-options data_root=DIR/``).

The images are drawn at a full image size (the pipelines resize them to 1333 x 800 or 1000 x 600 as they would
real ones). The annotation files list every class of the layout, under its own category ids (COCO's skip 10
numbers), as the configs' datasets and evaluators expect; the shapes' four classes stand for the first four.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mnc_bench.data.sbd import VOC_CLASSES
from mnc_bench.data.synthetic import (
    CATEGORIES,
    DATASET_SPLITS,
    ShapesConfig,
    write_annotations,
    write_shapes_dataset,
)
from mnc_bench.errors import UserError
from mnc_bench.io import fsync_dir, make_staging_dir

# COCO 2017's category ids of its 80 classes (in mmdet's CocoDataset class order).
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83})


@dataclass(frozen=True)
class Layout:
    image_dirs: dict[str, str]  # split -> image folder under the root
    annotation_files: dict[str, str]  # split -> file under root/annotations
    image_size: int  # default side of the drawn images


LAYOUTS = {
    # configs/_base_/datasets/coco.py
    "coco": Layout(image_dirs={"train": "train2017", "val": "val2017"},
                   annotation_files={"train": "instances_train2017.json", "val": "instances_val2017.json"},
                   image_size=800),
    # configs/_base_/datasets/voc_sbd.py (what `mnc-bench data sbd2coco` writes)
    "voc": Layout(image_dirs={"train": "images", "val": "images"},
                  annotation_files={"train": "instances_train.json", "val": "instances_val.json"},
                  image_size=600),
}


def layout_categories(layout: str) -> list[dict]:
    """The COCO ``categories`` records of every class of ``layout``."""
    if layout == "coco":
        from mmdet.datasets import CocoDataset

        names = CocoDataset.METAINFO["classes"]
        return [{"id": cid, "name": name, "supercategory": "coco"}
                for cid, name in zip(COCO_CATEGORY_IDS, names)]
    return [{"id": index + 1, "name": name, "supercategory": "voc"} for index, name in enumerate(VOC_CLASSES)]


def write_layout_dataset(out_dir: str | os.PathLike[str], layout: str, *, num_train: int, num_val: int,
                         image_size: int | None = None, seed: int = 0) -> str:
    """Write the shapes dataset to ``out_dir`` in ``layout`` ('coco' or 'voc'); returns a summary line per
    split. Built in a staging folder beside ``out_dir`` and renamed into place."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    spec = LAYOUTS[layout]
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output directory {out} exists and is not empty (choose another --out or remove it)")
    categories = layout_categories(layout)
    staging = make_staging_dir(out)
    try:
        shapes = staging / "shapes"
        write_shapes_dataset(shapes, num_train=num_train, num_val=num_val, workers=1,
                             config=ShapesConfig(image_size=image_size or spec.image_size, seed=seed))
        (staging / "annotations").mkdir()
        stand_for = ", ".join(f"{shape} as {category['name']}"
                              for shape, category in zip(CATEGORIES, categories))
        lines = [f"wrote {out} ({layout} layout, {len(categories)} classes; the shapes' {stand_for})"]
        for split in DATASET_SPLITS:
            source = shapes / "annotations" / f"instances_{split}.json"
            coco = json.loads(source.read_text(encoding="utf-8"))
            _relabel(coco, categories)
            image_dir = staging / spec.image_dirs[split]
            image_dir.mkdir(exist_ok=True)
            for image in coco["images"]:  # both VOC splits share one folder: the file names say the split
                name = f"{split}_{image['file_name']}"
                os.replace(shapes / split / image["file_name"], image_dir / name)
                image["file_name"] = name
            annotations = f"annotations/{spec.annotation_files[split]}"
            write_annotations(staging / annotations, coco)
            lines.append(f"{split}: {len(coco['images'])} images of {image_dir.name}/, "
                         f"{len(coco['annotations'])} annotations in {annotations}")
        shutil.rmtree(shapes)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return "\n".join(lines)


def _relabel(coco: dict, categories: list[dict]) -> None:
    """The shapes' categories 1..4 become the layout's first four; every class of the layout is listed."""
    ids = [category["id"] for category in categories]
    for annotation in coco["annotations"]:
        annotation["category_id"] = ids[annotation["category_id"] - 1]
    coco["categories"] = categories
