# PANet R50 on COCO 2017, 1x schedule (paper, R50, COCO test-dev mask AP 36.6 with multi-scale training,
# sync BN and a heavier head, which this config does not add). Needs local ImageNet weights (r50_fpn.py).
_base_ = [
    '../_base_/models/panet_r50_fpn.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]
model = dict(data_preprocessor=_base_.data_preprocessor)
