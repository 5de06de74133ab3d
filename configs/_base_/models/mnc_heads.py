# MNC's stages 2..N (mask stage, mask-guided classification stage, cascade), shared by every MNC config.
# Not a `model` dict: the backbone/neck/RPN base of each dataset owns `model`, so MNC configs list this file
# beside it and build their cascade from these parts, overriding only what differs (classes, fc width, ...):
#   cascade=dict(_base_.mnc_cascade, num_classes=4, cls_fc_dim=256)
# A setting left out takes mnc_bench.models.mnc.MNCConfig's default (paper / MNC-code, documented there).
# Paper settings: 28x28 RoI warping (max-pooled to 14x14) -> fc 256 -> 28x28 class-agnostic masks; stages 4/5
# share weights with 2/3; box_grad: warping differentiable w.r.t. the boxes; class-wise NMS 0.3, mask voting
# (mask IoU 0.5), masks binarised at 0.4 (MNC-code); all loss weights 1 (paper; MNC-code weighs masks 2).
# Stage 3's fc width is 1024 as Mask R-CNN's box head (VGG-16: 4096).
# Stage 3 has MNC-code's two classifiers (stage3_labels='both', models/VGG16/mnc_5stage/train.prototxt):
# cls_score on box-IoU >= 0.5 labels and seg_cls_score on mask-IoU >= 0.5 labels (stage-2 mask binarised at
# 0.4 vs the ground truth, lib/pylayer/mask_layer.py); test scores and the stage bridge use seg_cls_score.
# `model.cascade.stage3_labels=box` is the paper's single box-level classifier.
mnc_cascade = dict(
    num_stages=3,
    share_weights=True,
    box_grad=True,
    stage3_labels='both',
    featmap_strides=[4, 8, 16, 32],
    finest_scale=56,
    warp_size=28,
    mask_size=28,
    mask_hidden_dim=256,
    cls_pooled_size=7,
    cls_fc_dim=1024,
    cls_num_fcs=2,
    box_target_stds=(0.1, 0.1, 0.2, 0.2))
mnc_loss_weights = dict(rpn_cls=1.0, rpn_box=1.0, mask=1.0, cls=1.0, box=1.0)
# RoI sampling, two recipes:
# - controlled (the FPN configs compared with Mask R-CNN / PANet): Mask R-CNN's sampler of the same dataset,
#   i.e. mmdet's RandomSampler with pos_fraction 0.25, positives at IoU >= 0.5, negatives from [0, 0.5),
#   ground truth added; each config sets num_rois to its Mask R-CNN's `num` (shapes 128, COCO/VOC 512).
mnc_train_rcnn = dict(fg_fraction=0.25, fg_iou=0.5, bg_iou_ranges=[(0.0, 0.5)], bg_fractions=[1.0])
# - faithful (MNC-code, lib/mnc_config.py + lib/pylayer/proposal_target_layer.py): 64 RoIs, 30 % foreground at
#   IoU >= 0.5, background 85 % from IoU [0.1, 0.5) and 15 % from [0, 0.1), a short range not refilled.
#   (MNC-code's ranges are closed, [0.1, 0.5] and [0, 0.1]; only RoIs at exactly 0.1 or 0.5 differ.)
mnc_code_train_rcnn = dict(num_rois=64, fg_fraction=0.3, fg_iou=0.5, bg_iou_ranges=[(0.1, 0.5), (0.0, 0.1)],
                           bg_fractions=[0.85, 0.15])
mnc_test_rcnn = dict(score_thr=0.05, nms_iou=0.3, max_per_img=100, mask_thr=0.4,
                     mask_voting=True, voting_iou=0.5, voting_resolution=56)
