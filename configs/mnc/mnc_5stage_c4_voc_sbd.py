# MNC, 5 stages, the "faithful" single-level variant on VOC 2012 + SBD: RoI warping of one stride-16 feature
# map as in the paper (which used VGG-16 conv5_3), here ResNet-50 up to conv4 (C4, 1024 channels), no FPN.
# MNC-code settings: RPN with 300 proposals after NMS 0.7 (6000 pre-NMS at test), 9 anchors of 128-512 px,
# 64 RoIs/image (25% fg), 21x21 masks, mask loss weight 2, class-wise NMS 0.3, mask voting, binarise at 0.4.
# Not as in the paper: ResNet conv5 is not used as a per-RoI head (the RoIs' fc layers read C4 directly), and
# the fc layers are 1024 wide (VGG-16's 4096 came with pretrained fc6/fc7 that ResNet does not have).
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
                 mask_size=21),
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
        rcnn=_base_.mnc_train_rcnn),
    test_cfg=dict(
        rpn=dict(nms_pre=6000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=_base_.mnc_test_rcnn))
