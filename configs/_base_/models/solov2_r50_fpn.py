# SOLOv2 (Wang et al. 2020) on the shared R50-FPN parts: backbone and FPN exactly as r50_fpn.py (SOLOv2 has no
# RPN; the shared RPN and its settings are dropped). Head: mmdet 3.3's
# configs/solov2/solov2_r50_fpn_1x_coco.py unchanged (512-channel kernel/category branches of 4 convs, 128 ->
# 256-channel mask features at stride 4, grids 40 / 36 / 24 / 16 / 12, focal + dice losses, Matrix NMS);
# mmdet's backbone for it is the same as the shared one. SOLOv2 predicts no boxes (mmdet fills them with
# zeros); SOLOv2MaskBoxes (baselines/solov2.py, our choice) sets each box to its mask's tight box, as mmdet
# does for Mask2Former, so its box AP is measured like Mask2Former's. mmdet's model zoo publishes mask AP
# only.
_base_ = './r50_fpn.py'

model = dict(
    _delete_=True,  # drop the RPN and its train/test settings; keep backbone and neck below
    type='SOLOv2MaskBoxes',
    backbone=_base_.model.backbone,
    neck=_base_.model.neck,
    mask_head=dict(
        type='SOLOV2Head',
        num_classes=80,
        in_channels=256,
        feat_channels=512,
        stacked_convs=4,
        strides=[8, 8, 16, 32, 32],
        scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
        pos_scale=0.2,
        num_grids=[40, 36, 24, 16, 12],
        cls_down_index=0,
        mask_feature_head=dict(
            feat_channels=128,
            start_level=0,
            end_level=3,
            out_channels=256,
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
