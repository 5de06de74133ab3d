# MNC, 3 stages, R50-FPN, COCO 2017, 1x: the "controlled" comparison with
# configs/mask_rcnn/mask_rcnn_r50_fpn_coco.py.
# Stage 1 (ResNet-50, FPN, RPN and its proposal counts) is _base_/models/r50_fpn.py, shared with Mask R-CNN;
# data, schedule and evaluator are the shared COCO ones. Stages 2-3 follow the paper (28x28 RoI warping ->
# 14x14 -> fc 256 -> 28x28 class-agnostic masks; mask-guided classification) except the fc width of stage 3,
# 1024 like Mask R-CNN's box head instead of VGG-16's 4096 (`--cfg-options model.cascade.cls_fc_dim=4096`).
# Needs local ImageNet weights: see configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = [
    '../_base_/models/r50_fpn.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]
custom_imports = dict(imports=['mnc_bench.models.mmdet_adapter'], allow_failed_imports=False)

model = dict(
    type='MNC',
    data_preprocessor=_base_.data_preprocessor,
    cascade=dict(
        num_classes=80,
        num_stages=3,
        share_weights=True,
        box_grad=True,
        featmap_strides=[4, 8, 16, 32],
        finest_scale=56,
        warp_size=28,
        mask_size=28,
        mask_hidden_dim=256,
        cls_pooled_size=7,
        cls_fc_dim=1024,
        cls_num_fcs=2,
        box_target_stds=(0.1, 0.1, 0.2, 0.2)),
    loss_weights=dict(rpn_cls=1.0, rpn_box=1.0, mask=1.0, cls=1.0, box=1.0),
    proposal_control=None,
    train_cfg=dict(rcnn=dict(num_rois=64, fg_fraction=0.25, fg_iou=0.5, bg_iou_low=0.0)),
    test_cfg=dict(
        rcnn=dict(score_thr=0.05, nms_iou=0.3, max_per_img=100, mask_thr=0.4,
                  mask_voting=True, voting_iou=0.5, voting_resolution=56)))
