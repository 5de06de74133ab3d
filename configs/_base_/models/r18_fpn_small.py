# Small CPU model parts shared by EVERY model on the shapes data (Mask R-CNN, PANet, MNC):
# ResNet-18 trained from scratch, a narrow 64-channel FPN, and the RPN with its proposal counts.
# A model config inherits this file and adds `type` and its own second stage (roi_head or MNC's cascade);
# it must not change backbone, neck width, rpn_head or the rpn/rpn_proposal settings, so that a comparison
# on shapes isolates what happens after the proposals. (PANet swaps FPN for PAFPN — the same lateral and
# output convs plus its bottom-up path — through its `bottom_up_path` switch.)
neck_channels = 64
num_proposals = 300  # per image, after NMS, in training and testing (MNC's paper setting)

model = dict(
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=neck_channels, num_outs=5),
    rpn_head=dict(
        type='RPNHead',
        in_channels=neck_channels,
        feat_channels=neck_channels,
        # 16..256 px anchors: shapes span ~15 px to the whole 128 px image.
        anchor_generator=dict(type='AnchorGenerator', scales=[4], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(nms_pre=1000, max_per_img=num_proposals, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=0)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=num_proposals, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0)))
