# MNC, 5 stages, R50-FPN, VOC 2012 + SBD masks (20 classes, MNC's split): the controlled comparison with
# configs/mask_rcnn/mask_rcnn_voc_sbd.py (same backbone, FPN, RPN and its proposal counts — 2000 proposals
# after NMS in training, 1000 at test — data, schedule and evaluator; Mask R-CNN's RoI sampler: 512
# RoIs/image, 25 % positive at IoU >= 0.5, GT added). The MNC stages are those of mnc_5stage_coco_r50.py. For
# the paper-like single-level network with MNC-code's sampler and proposal counts see
# mnc_5stage_c4_voc_sbd.py.
# Needs local ImageNet weights: see configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = [
    '../_base_/models/r50_fpn.py',
    '../_base_/models/mnc_heads.py',
    '../_base_/datasets/voc_sbd.py',
    '../_base_/schedules/voc_sbd.py',
]

model = dict(
    type='MNC',
    data_preprocessor=_base_.data_preprocessor,
    cascade=dict(_base_.mnc_cascade, num_classes=20, num_stages=5),
    loss_weights=_base_.mnc_loss_weights,
    proposal_control=None,
    train_cfg=dict(rcnn=dict(_base_.mnc_train_rcnn, num_rois=512)),
    test_cfg=dict(rcnn=_base_.mnc_test_rcnn))
