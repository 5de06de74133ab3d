# MNC, 3 stages, R101-FPN, COCO 2017, 1x: the controlled comparison with
# configs/mask_rcnn/mask_rcnn_r101_fpn_coco.py (mnc_3stage_coco_r50.py with a deeper backbone).
# Needs torchvision's ImageNet ResNet-101 locally; see configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = './mnc_3stage_coco_r50.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
