# MNC, 3 stages, R50-FPN, COCO 2017, 1x: the "controlled" comparison with
# configs/mask_rcnn/mask_rcnn_r50_fpn_coco.py.
# Stage 1 (ResNet-50, FPN, RPN and its proposal counts: mmdet's 2000 proposals after NMS in training and 1000
# at test, for every model) is _base_/models/r50_fpn.py, shared with Mask R-CNN; data, schedule and evaluator
# are the shared COCO ones. Stages 2-3 are _base_/models/mnc_heads.py: the paper's settings except the fc
# width of stage 3, 1024 like Mask R-CNN's box head instead of VGG-16's 4096
# (`--cfg-options model.cascade.cls_fc_dim=4096`), with MNC-code's two stage-3 classifiers. RoI sampling is
# Mask R-CNN's (_base_/models/mask_rcnn_r50_fpn.py: 512 RoIs/image, 25 % positive at IoU >= 0.5, GT added).
# Needs local ImageNet weights: see configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = [
    '../_base_/models/r50_fpn.py',
    '../_base_/models/mnc_heads.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]

model = dict(
    type='MNC',
    data_preprocessor=_base_.data_preprocessor,
    cascade=dict(_base_.mnc_cascade, num_classes=80),
    loss_weights=_base_.mnc_loss_weights,
    proposal_control=None,
    train_cfg=dict(rcnn=dict(_base_.mnc_train_rcnn, num_rois=512)),
    test_cfg=dict(rcnn=_base_.mnc_test_rcnn))
