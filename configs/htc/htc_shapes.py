# Small CPU Hybrid Task Cascade (Chen et al. 2019) on the synthetic shapes, without the semantic branch (it
# needs COCO-stuff maps): mmdet 3.3's configs/htc/htc-without-semantic_r50_fpn_1x_coco.py. Box and mask stages
# are interleaved (each stage's mask head sees the boxes that stage refined) and mask information flows from
# stage to stage (each mask head adds the previous heads' features): MNC's cascade of box and mask tasks grown
# up. Shared with every shapes model (_base_/models/r18_fpn_small.py): ResNet-18 from scratch, 64-channel FPN,
# the RPN and its proposal settings, data, schedule, evaluator. The second stage is mmdet's, narrowed as
# cascade_mask_rcnn_shapes.py (mask_rcnn_shapes.py's widths and RoI sampler at every stage) plus one cut (our
# choice): 2 convs per mask head instead of 4, because mask information flow re-runs the earlier stages' mask
# heads at every stage, which makes mmdet's 4 convs the dearest part of a training step on CPU (the measured
# cost per step is in docs/benchmarks.md). mmdet's RPN (SmoothL1 beta 1/9, allowed_border 0, 2000
# training proposals) gives way to the shared one, and score_thr is 0.05 as on every shapes model (mmdet's HTC
# tests at 0.001, the HTC paper's setting).
_base_ = [
    '../_base_/models/r18_fpn_small.py',
    '../_base_/models/roi_layers_cpu.py',
    '../_base_/datasets/shapes.py',
    '../_base_/schedules/shapes_cpu.py',
]
model = dict(
    type='HybridTaskCascade',
    data_preprocessor=_base_.data_preprocessor,
    roi_head=dict(
        type='HybridTaskCascadeRoIHead',
        interleaved=True,
        mask_info_flow=True,
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=_base_.box_roi_layer,
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
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
        # The first stage has no previous mask features to add (with_conv_res=False).
        mask_head=[
            dict(
                type='HTCMaskHead',
                with_conv_res=stage > 0,
                num_convs=2,
                in_channels=64,
                conv_out_channels=64,
                num_classes=4,
                loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))
            for stage in range(3)
        ]),
    train_cfg=dict(
        # mmdet's HTC leaves match_low_quality at MaxIoUAssigner's default (True); Cascade Mask R-CNN sets
        # False.
        rcnn=[
            dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                              match_low_quality=True, ignore_iof_thr=-1),
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
