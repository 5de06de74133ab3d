# MNC, 5 stages, R101-FPN, COCO 2017, 1x (paper: ResNet-101 MNC, COCO test-dev mask AP 24.6 — a different,
# C4-style network and schedule; compare with configs/mask_rcnn/mask_rcnn_r101_fpn_coco.py instead).
# Needs torchvision's ImageNet ResNet-101 locally; see configs/_base_/models/r101_fpn.py.
_base_ = './mnc_5stage_coco_r50.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
