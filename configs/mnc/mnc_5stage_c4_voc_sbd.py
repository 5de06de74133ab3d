# MNC, 5 stages, the "faithful" single-level variant on VOC 2012 + SBD: RoI warping of one stride-16 feature
# map as in the paper (which used VGG-16 conv5_3), here ResNet-50 up to conv4 (C4, 1024 channels), no FPN.
# MNC-code settings (daijifeng001/MNC, checked against lib/mnc_config.py, lib/pylayer/*.py,
# experiments/cfgs/VGG16/mnc_5stage.yml and models/VGG16/mnc_5stage/{train,test}.prototxt):
# - RPN: 9 anchors of 128-512 px; NMS 0.7; 300 proposals after NMS in training (mnc_config.py's default is
#   2000, but mnc_5stage.yml sets TRAIN.RPN_POST_NMS_TOP_N: 300) from the best 12000, and 300 at test from the
#   best 6000; 5-stage inference pools the 300 stage-2/3 instances with the 300 stage-4/5 ones: 600.
# - RoI sampling (mnc_code_train_rcnn): 64 RoIs/image, 30 % foreground at IoU >= 0.5, background 85 % from
#   [0.1, 0.5) and 15 % from [0, 0.1), not refilled; later rounds keep all RoIs plus the ground truth.
# - Stage 3: cls_score (box-IoU labels) and seg_cls_score (mask-IoU labels); scores and the stage bridge from
#   seg_cls_score (stage3_labels='both'); 21x21 masks; mask loss weight 2; class-wise NMS 0.3, mask voting,
#   binarise at 0.4; box-gradient bound 1/512 per image.
# Not as in MNC-code: ResNet conv5 is not used as a per-RoI head (the RoIs' fc layers read C4 directly), and
# the fc layers are 1024 wide (VGG-16's 4096 came with pretrained fc6/fc7 that ResNet does not have); RPN
# proposals are not filtered by MNC-code's 16-px minimum size (min_bbox_size is in network-input pixels here);
# the RPN's anchor labels are not overridden by the stage-2/3 RoI sample (MNC-code's TRAIN.MIX_INDEX); two
# images per batch (MNC-code: one; the box-gradient bound is kept per image).
_base_ = [
    '../_base_/models/mnc_heads.py',
    '../_base_/datasets/voc_sbd.py',
    '../_base_/schedules/voc_sbd.py',
]
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth'

model = dict(
    type='MNC',
    data_preprocessor=_base_.data_preprocessor,
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)),
    rpn_head=dict(
        type='RPNHead',
        in_channels=1024,
        feat_channels=1024,
        anchor_generator=dict(
            type='AnchorGenerator', scales=[8, 16, 32], ratios=[0.5, 1.0, 2.0], strides=[16]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    cascade=dict(_base_.mnc_cascade, num_classes=20, num_stages=5, featmap_strides=[16], in_channels=1024,
                 mask_size=21, stage3_labels='both'),
    loss_weights=dict(_base_.mnc_loss_weights, mask=2.0),
    proposal_control=None,
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(
            nms_pre=12000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=_base_.mnc_code_train_rcnn),
    test_cfg=dict(
        rpn=dict(nms_pre=6000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=_base_.mnc_test_rcnn))
