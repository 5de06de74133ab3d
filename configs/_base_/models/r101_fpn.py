# As r50_fpn.py with ResNet-101 (torchvision's ImageNet weights, resnet101-63fe2227.pth, read locally).
_base_ = './r50_fpn.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
