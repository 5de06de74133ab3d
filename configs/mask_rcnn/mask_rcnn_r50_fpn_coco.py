# Mask R-CNN R50-FPN, COCO 2017, 1x — the mmdet reference (zoo: box 38.2 / mask 34.7).
# Needs local ImageNet weights: see configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = [
    '../_base_/models/mask_rcnn_r50_fpn.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]
model = dict(data_preprocessor=_base_.data_preprocessor)
