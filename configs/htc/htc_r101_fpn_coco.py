# HTC without the semantic branch, R101-FPN, COCO 2017, 1x (mmdet's R101 HTC row, htc_r101_fpn_20e_coco: box
# 44.8 / mask 39.6, is 20 epochs and with the semantic branch). Needs torchvision's ImageNet ResNet-101
# locally (resnet101-63fe2227.pth); override with `--cfg-options backbone_checkpoint=/path/to/resnet101.pth`.
_base_ = './htc_r50_fpn_coco.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
