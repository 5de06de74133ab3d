# MNC (Dai, He, Sun 2016), 3 stages, small CPU model on the synthetic shapes.
# Stage 1 is the shared ResNet-18 / 64-channel FPN / RPN of _base_/models/r18_fpn_small.py (identical to the
# Mask R-CNN and PANet shapes configs: 300 proposals per image); stages 2-3 are MNC's, with narrow fc layers.
# Paper settings kept: 28x28 RoI warping, 28x28 masks, 64 RoIs/image at 25% foreground, class-wise NMS 0.3,
# mask voting, masks binarised at 0.4 (MNC-code), all loss weights 1 (paper; MNC-code weighs masks 2).
_base_ = [
    '../_base_/models/r18_fpn_small.py',
    '../_base_/datasets/shapes.py',
    '../_base_/schedules/shapes_cpu.py',
]
custom_imports = dict(imports=['mnc_bench.models.mmdet_adapter'], allow_failed_imports=False)

model = dict(
    type='MNC',
    data_preprocessor=_base_.data_preprocessor,
    cascade=dict(
        num_classes=4,
        num_stages=3,
        share_weights=True,
        box_grad=True,
        featmap_strides=[4, 8, 16, 32],
        finest_scale=56,
        warp_size=28,
        mask_size=28,
        mask_hidden_dim=256,
        cls_pooled_size=7,
        cls_fc_dim=256,
        cls_num_fcs=2,
        box_target_stds=(0.1, 0.1, 0.2, 0.2)),
    loss_weights=dict(rpn_cls=1.0, rpn_box=1.0, mask=1.0, cls=1.0, box=1.0),
    proposal_control=None,
    train_cfg=dict(rcnn=dict(num_rois=64, fg_fraction=0.25, fg_iou=0.5, bg_iou_low=0.0)),
    test_cfg=dict(
        rcnn=dict(score_thr=0.05, nms_iou=0.3, max_per_img=100, mask_thr=0.4,
                  mask_voting=True, voting_iou=0.5, voting_resolution=56)))
