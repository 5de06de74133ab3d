# Cascade Mask R-CNN R50-FPN, COCO 2017, on the shared COCO path (pipeline, 1x schedule, evaluator) — mmdet
# 3.3's configs/cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py (zoo: box 41.2 / mask 35.9) with the shared
# RPN. Needs local ImageNet weights: see configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = [
    '../_base_/models/cascade_mask_rcnn_r50_fpn.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]
model = dict(data_preprocessor=_base_.data_preprocessor)
