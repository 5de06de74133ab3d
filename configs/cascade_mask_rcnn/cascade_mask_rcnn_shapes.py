# Small CPU Cascade Mask R-CNN (Cai & Vasconcelos 2019) on the synthetic shapes. Shared with every shapes
# model (_base_/models/r18_fpn_small.py): ResNet-18 from scratch, 64-channel FPN, the RPN and its proposal
# settings, data, schedule, evaluator. Only the second stage differs: mmdet 3.3's configs/_base_/models/
# cascade-mask-rcnn_r50_fpn.py (3 box stages at IoU 0.5 / 0.6 / 0.7, class-agnostic regression with tighter
# target stds per stage, stage loss weights 1 / 0.5 / 0.25, one FCN mask head per stage, every stage sampling
# RoIs as Mask R-CNN does), narrowed as mask_rcnn_shapes.py: each stage's heads and RoI sampler are that
# config's (64-channel RoI features and mask convs, 256-wide box fcs, 128 RoIs per image at 25 % positive; our
# choice, for CPU cost; the measured cost per step is in docs/benchmarks.md). mmdet's RPN differs from the
# shared one (SmoothL1 beta 1/9, allowed_border 0, 2000 training proposals): we keep the shared RPN so rows
# differ only after the proposals.
_base_ = [
    '../_base_/models/r18_fpn_small.py',
    '../_base_/models/roi_layers_cpu.py',
    '../_base_/datasets/shapes.py',
    '../_base_/schedules/shapes_cpu.py',
]
model = dict(
    type='CascadeRCNN',
    data_preprocessor=_base_.data_preprocessor,
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=_base_.box_roi_layer,
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        # One box head per stage; each regresses relative to a tighter box distribution (mmdet's stds).
        bbox_head=[
            dict(
                type='Shared2FCBBoxHead',
                in_channels=64,
                fc_out_channels=256,
                roi_feat_size=7,
                num_classes=4,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                                target_stds=stds),
                reg_class_agnostic=True,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
        ],
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=_base_.mask_roi_layer,
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        # One dict: CascadeRoIHead builds a separate copy for each stage.
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=64,
            conv_out_channels=64,
            num_classes=4,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rcnn=[
            dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                              match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                mask_size=28,
                pos_weight=-1,
                debug=False)
            for iou in (0.5, 0.6, 0.7)
        ]),
    test_cfg=dict(
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100,
                  mask_thr_binary=0.5)))
