# Cascade Mask R-CNN R101-FPN, COCO 2017, 1x (mmdet zoo, cascade-mask-rcnn_r101_fpn_1x_coco: box 42.9 / mask
# 37.3). Needs torchvision's ImageNet ResNet-101 locally (resnet101-63fe2227.pth); override with
# `--cfg-options backbone_checkpoint=/path/to/resnet101.pth`.
_base_ = './cascade_mask_rcnn_r50_fpn_coco.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
