# SOLOv2 R101-FPN, COCO 2017, 1x (mmdet's R101 row, solov2_r101_fpn_ms-3x_coco: mask 39.1, is 36 epochs with
# multi-scale training). Needs torchvision's ImageNet ResNet-101 locally (resnet101-63fe2227.pth); override
# with `--cfg-options backbone_checkpoint=/path/to/resnet101.pth`.
_base_ = './solov2_r50_fpn_coco.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
