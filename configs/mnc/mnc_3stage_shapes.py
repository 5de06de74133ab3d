# MNC (Dai, He, Sun 2016), 3 stages, small CPU model on the synthetic shapes: a controlled config.
# Stage 1 is the shared ResNet-18 / 64-channel FPN / RPN of _base_/models/r18_fpn_small.py (identical to the
# Mask R-CNN and PANet shapes configs: 300 proposals per image after NMS, in training and at test, for every
# model); stages 2-3 are MNC's, with narrow fc layers. The paper's settings for stages 2-3 are in
# _base_/models/mnc_heads.py; only stage 3's fc width is narrowed. RoI sampling is Mask R-CNN's
# (configs/mask_rcnn/mask_rcnn_shapes.py: 128 RoIs/image, 25 % positive at IoU >= 0.5, GT added), not
# MNC-code's (see mnc_5stage_c4_voc_sbd.py). Stage 3 has MNC-code's two classifiers (stage3_labels='both').
_base_ = [
    '../_base_/models/r18_fpn_small.py',
    '../_base_/models/mnc_heads.py',
    '../_base_/datasets/shapes.py',
    '../_base_/schedules/shapes_cpu.py',
]

model = dict(
    type='MNC',
    data_preprocessor=_base_.data_preprocessor,
    cascade=dict(_base_.mnc_cascade, num_classes=4, cls_fc_dim=256),
    loss_weights=_base_.mnc_loss_weights,
    proposal_control=None,
    train_cfg=dict(rcnn=dict(_base_.mnc_train_rcnn, num_rois=128)),
    test_cfg=dict(rcnn=_base_.mnc_test_rcnn))
