# Small CPU SOLOv2 (Wang et al. 2020) on the synthetic shapes: a single-stage, box-free model (no RPN, no
# RoIs): each cell of an S x S grid per FPN level classifies the object centred there and predicts the kernel
# of a dynamic 1x1 conv that, applied to one shared mask-feature map, gives that object's mask; Matrix NMS at
# test. Shared with every shapes model: backbone (ResNet-18 from scratch) and neck (64-channel FPN) exactly as
# _base_/models/r18_fpn_small.py, data, schedule, evaluator. The RPN and its settings have no place here.
# Head: mmdet 3.3's configs/solov2/solov2_r50_fpn_1x_coco.py, with
#   feat_channels 512 -> 64 and the mask-feature branch 128 / 256 -> 64 / 64 channels (the neck width; our
#   choice, for CPU cost), 4 stacked convs per branch kept;
#   scale_ranges: mmdet's divided by 6 (its 800 px input side -> our 128 px), so objects spread over the five
#   levels as on COCO (shapes' objects span ~15-128 px; of 194 objects in 63 shapes-train images, 12 / 36 /
#   60 / 62 / 29 % fall in the five levels' ranges, which overlap by 2x as mmdet's);
#   num_grids, pos_scale, losses, Matrix NMS: mmdet's (the grid is relative to the image: no scaling needed).
# SOLOv2 predicts no boxes (mmdet fills them with zeros); SOLOv2MaskBoxes (baselines/solov2.py, our choice)
# sets each box to its mask's tight box, as mmdet does for Mask2Former. mmdet's model zoo publishes mask AP
# only.
_base_ = [
    '../_base_/models/r18_fpn_small.py',
    '../_base_/datasets/shapes.py',
    '../_base_/schedules/shapes_cpu.py',
]
model = dict(
    _delete_=True,  # drop the shared RPN and its train/test settings; keep backbone and neck below
    type='SOLOv2MaskBoxes',
    data_preprocessor=_base_.data_preprocessor,
    backbone=_base_.model.backbone,
    neck=_base_.model.neck,
    mask_head=dict(
        type='SOLOV2Head',
        num_classes=4,
        in_channels=64,
        feat_channels=64,
        stacked_convs=4,
        strides=[8, 8, 16, 32, 32],
        scale_ranges=((1, 16), (8, 32), (16, 64), (32, 128), (64, 512)),
        pos_scale=0.2,
        num_grids=[40, 36, 24, 16, 12],
        cls_down_index=0,
        mask_feature_head=dict(
            feat_channels=64,
            start_level=0,
            end_level=3,
            out_channels=64,
            mask_stride=4,
            norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)),
    test_cfg=dict(
        nms_pre=500,
        score_thr=0.1,
        mask_thr=0.5,
        filter_thr=0.05,
        kernel='gaussian',
        sigma=2.0,
        max_per_img=100))
