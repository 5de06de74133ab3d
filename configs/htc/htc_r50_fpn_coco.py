# HTC without the semantic branch, R50-FPN, COCO 2017, on the shared COCO path (pipeline, 1x schedule,
# evaluator) — mmdet 3.3's configs/htc/htc-without-semantic_r50_fpn_1x_coco.py with the shared RPN. mmdet's
# zoo has no number for this variant; its HTC rows (htc_r50_fpn_1x_coco: box 42.3 / mask 37.4) include the
# semantic branch. Needs local ImageNet weights: see configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = [
    '../_base_/models/htc_without_semantic_r50_fpn.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]
model = dict(data_preprocessor=_base_.data_preprocessor)
