"""Convert SBD's instance masks for PASCAL VOC (Hariharan et al. 2011) to COCO json
(``mnc-bench data sbd2coco``).

SBD (``benchmark_RELEASE/dataset``) holds, per image id (``2008_000002``):

- ``inst/<id>.mat``: struct ``GTinst`` with ``Segmentation`` (H x W, 0 = background, k = instance k),
  ``Categories`` (one VOC class 1..20 per instance, in instance order) and ``Boundaries`` (ignored);
- ``cls/<id>.mat``: struct ``GTcls`` with ``Segmentation`` (H x W class labels), ``Boundaries`` and
  ``CategoriesPresent`` — used only to cross-check each instance's class (the summary counts disagreements);
- ``img/<id>.jpg`` and the ``train.txt`` / ``val.txt`` split (8498 / 2857 images).

Splits:

- ``mnc`` (default): MNC's — VOC 2012 ``ImageSets/Main/{train,val}.txt`` restricted to images with SBD masks,
  5623 / 5732 images at full scale (SBD covers 11355 of VOC 2012's 11540 train+val images; the VOC 2012
  *segmentation* lists have only 1464 / 1449 images, so MNC's counts come from the Main lists).
- ``sbd``: SBD's own ``train.txt`` / ``val.txt``.

Output: ``OUT/annotations/instances_{train,val}.json`` (masks as RLE with str counts) and ``OUT/images``, a
symlink to the JPEG directory (VOC's ``JPEGImages``, else SBD's ``img``) or, with ``copy_images``, a copy of
the images used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mnc_bench.errors import UserError
from mnc_bench.io import write_json

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# Which train/val image lists define the split (see the module docstring).
SPLIT_SCHEMES = ("mnc", "sbd")
# Label for "not annotated" pixels in VOC-style label maps; never an instance.
IGNORE_LABEL = 255


@dataclass
class SplitSummary:
    images: int = 0
    instances: int = 0
    skipped_no_masks: int = 0  # listed ids without inst/<id>.mat
    class_disagreements: int = 0  # instances whose GTcls majority class differs from GTinst.Categories
    per_class: dict[str, int] = field(default_factory=dict)

    def line(self, split: str) -> str:
        classes = ", ".join(f"{name} {count}" for name, count in self.per_class.items() if count)
        extra = []
        if self.skipped_no_masks:
            extra.append(f"{self.skipped_no_masks} listed image(s) without SBD masks skipped")
        if self.class_disagreements:
            extra.append(f"{self.class_disagreements} instance(s) whose GTcls class disagrees (GTinst kept)")
        tail = f"; {'; '.join(extra)}" if extra else ""
        return f"{split}: {self.images} images, {self.instances} instances ({classes}){tail}"


def _find_sbd_dataset(sbd_root: Path) -> Path:
    for candidate in (sbd_root, sbd_root / "dataset", sbd_root / "benchmark_RELEASE" / "dataset"):
        if (candidate / "inst").is_dir():
            return candidate
    raise UserError(f"--sbd {sbd_root}: no inst/ directory found; expected SBD's benchmark_RELEASE/dataset "
                    "(inst/*.mat, cls/*.mat, img/*.jpg, train.txt, val.txt)")


def _find_voc(voc_root: Path) -> Path:
    for candidate in (voc_root, voc_root / "VOC2012", voc_root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise UserError(f"--voc {voc_root}: no JPEGImages/ directory found; expected VOCdevkit/VOC2012 "
                    "(JPEGImages/*.jpg, ImageSets/Main/{train,val}.txt)")


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"image list {path} not found")
    ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise UserError(f"image list {path} is empty")
    return ids


def _struct_field(struct: Any, name: str, path: Path, struct_name: str) -> Any:
    if not hasattr(struct, name):
        raise UserError(f"{path}: {struct_name} has no field {name!r} (fields: "
                        f"{', '.join(struct._fieldnames)})")
    return getattr(struct, name)


def _load_struct(path: Path, struct_name: str) -> Any:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises several types for damaged files
        raise UserError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    if struct_name not in mat:
        raise UserError(f"{path}: no {struct_name} struct (found "
                        f"{', '.join(k for k in mat if not k.startswith('__'))})")
    return mat[struct_name]


def read_sbd_instances(
    inst_path: Path, cls_path: Path | None = None
) -> tuple[list[np.ndarray], list[int], int]:
    """Instance masks (H x W bool, instance order, empty ones dropped), their VOC class ids (1..20), and how
    many disagree with the majority class of ``GTcls.Segmentation`` under the mask (0 without
    ``cls_path``)."""
    gt = _load_struct(inst_path, "GTinst")
    segmentation = np.asarray(_struct_field(gt, "Segmentation", inst_path, "GTinst"))
    categories = np.atleast_1d(
        np.asarray(_struct_field(gt, "Categories", inst_path, "GTinst"))).astype(np.int64)
    categories = categories.reshape(-1)
    if segmentation.ndim != 2 or segmentation.size == 0:
        raise UserError(f"{inst_path}: GTinst.Segmentation must be a 2-D label map, got shape "
                        f"{segmentation.shape}")
    ids = np.unique(segmentation)
    ids = ids[(ids != 0) & (ids != IGNORE_LABEL)]
    if len(ids) and (ids.min() < 1 or ids.max() > len(categories)):
        raise UserError(f"{inst_path}: instance ids {ids.min()}..{ids.max()} in GTinst.Segmentation but "
                        f"{len(categories)} entr(y/ies) in GTinst.Categories")
    bad = [int(c) for c in categories if not 1 <= c <= len(VOC_CLASSES)]
    if bad:
        raise UserError(f"{inst_path}: GTinst.Categories has class {bad[0]} outside 1..{len(VOC_CLASSES)}")
    class_map = None
    if cls_path is not None and cls_path.is_file():
        class_map = np.asarray(
            _struct_field(_load_struct(cls_path, "GTcls"), "Segmentation", cls_path, "GTcls"))
        if class_map.shape != segmentation.shape:
            raise UserError(f"{cls_path}: GTcls.Segmentation shape {class_map.shape} differs from "
                            f"{inst_path.name}'s {segmentation.shape}")
    masks, classes, disagreements = [], [], 0
    for instance_id in ids.tolist():
        mask = segmentation == instance_id
        category = int(categories[instance_id - 1])
        if class_map is not None:
            labels = class_map[mask]
            labels = labels[(labels != 0) & (labels != IGNORE_LABEL)]
            if len(labels) and int(np.bincount(labels.astype(np.int64)).argmax()) != category:
                disagreements += 1
        masks.append(mask)
        classes.append(category)
    return masks, classes, disagreements


def _annotation(mask: np.ndarray, category: int, ann_id: int, image_id: int) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "segmentation": {"size": [int(mask.shape[0]), int(mask.shape[1])],
                         "counts": rle["counts"].decode("ascii")},
        "area": int(mask.sum()),
        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
        "iscrowd": 0,
    }


def image_id_from_name(name: str) -> int:
    """``2008_000002`` -> 2008000002 (stable, readable); other names fall back to a running index."""
    digits = name.replace("_", "")
    return int(digits) if digits.isdigit() and len(digits) <= 18 else -1


def convert_split(sbd: Path, names: Iterable[str], images_dir: Path) -> tuple[dict[str, Any], SplitSummary]:
    summary = SplitSummary(per_class={name: 0 for name in VOC_CLASSES})
    images, annotations = [], []
    used_ids: set[int] = set()
    missing_images: list[str] = []
    for index, name in enumerate(names):
        inst = sbd / "inst" / f"{name}.mat"
        if not inst.is_file():
            summary.skipped_no_masks += 1
            continue
        masks, classes, disagreements = read_sbd_instances(inst, sbd / "cls" / f"{name}.mat")
        if not (images_dir / f"{name}.jpg").is_file():
            missing_images.append(name)
            continue
        image_id = image_id_from_name(name)
        if image_id < 0 or image_id in used_ids:
            image_id = 10**12 + index
        used_ids.add(image_id)
        height, width = _mask_shape(inst, masks)
        images.append({"id": image_id, "file_name": f"{name}.jpg", "width": width, "height": height})
        for mask, category in zip(masks, classes):
            annotations.append(_annotation(mask, category, len(annotations) + 1, image_id))
            summary.per_class[VOC_CLASSES[category - 1]] += 1
        summary.class_disagreements += disagreements
    if missing_images:
        raise UserError(f"{len(missing_images)} image(s) not found in {images_dir}, e.g. "
                        f"{missing_images[0]}.jpg")
    summary.images, summary.instances = len(images), len(annotations)
    categories = [{"id": k, "name": name, "supercategory": "voc"}
                  for k, name in enumerate(VOC_CLASSES, start=1)]
    return {"images": images, "annotations": annotations, "categories": categories}, summary


def _mask_shape(inst: Path, masks: list[np.ndarray]) -> tuple[int, int]:
    if masks:
        return int(masks[0].shape[0]), int(masks[0].shape[1])
    segmentation = np.asarray(_load_struct(inst, "GTinst").Segmentation)
    return int(segmentation.shape[0]), int(segmentation.shape[1])


def convert_sbd(
    sbd_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    voc_root: str | os.PathLike[str] | None = None,
    split: str = "mnc",
    copy_images: bool = False,
) -> str:
    """Write ``out_dir/annotations/instances_{train,val}.json`` and ``out_dir/images``; return a summary."""
    if split not in SPLIT_SCHEMES:
        raise UserError(f"--split must be one of {', '.join(SPLIT_SCHEMES)}, got {split!r}")
    sbd = _find_sbd_dataset(Path(sbd_root))
    voc = _find_voc(Path(voc_root)) if voc_root is not None else None
    if split == "mnc":
        if voc is None:
            raise UserError("--split mnc needs --voc (VOC 2012's ImageSets/Main/{train,val}.txt)")
        lists = {s: _read_ids(voc / "ImageSets" / "Main" / f"{s}.txt") for s in ("train", "val")}
    else:
        lists = {s: _read_ids(sbd / f"{s}.txt") for s in ("train", "val")}
    images_dir = voc / "JPEGImages" if voc is not None else sbd / "img"
    if not images_dir.is_dir():
        raise UserError(f"image directory {images_dir} not found")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output directory {out} exists and is not empty (choose another --out or remove it)")
    converted = {s: convert_split(sbd, names, images_dir) for s, names in lists.items()}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for s, (coco, _) in converted.items():
        write_json(out / "annotations" / f"instances_{s}.json", coco)
    _place_images(images_dir, out / "images", converted, copy_images)
    lines = [f"wrote {out} (split {split}; images {'copied' if copy_images else 'linked'} from {images_dir})"]
    lines += [summary.line(s) for s, (_, summary) in converted.items()]
    return "\n".join(lines)


def _place_images(source: Path, target: Path, converted: dict, copy_images: bool) -> None:
    if not copy_images:
        target.symlink_to(source.resolve(), target_is_directory=True)
        return
    target.mkdir(parents=True, exist_ok=True)
    for coco, _ in converted.values():
        for image in coco["images"]:
            shutil.copy2(source / image["file_name"], target / image["file_name"])
