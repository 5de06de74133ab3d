# PANet R101 on COCO 2017, 1x. Needs torchvision's ImageNet ResNet-101 locally (resnet101-63fe2227.pth).
_base_ = './panet_r50_coco.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
