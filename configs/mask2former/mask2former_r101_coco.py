# Mask2Former R101, instance mode, COCO 2017, on the shared 1x path (mmdet zoo,
# mask2former_r101_8xb2-lsj-50e_coco: box 46.7 / mask 44.0 after 50 epochs of LSJ with AdamW; see
# mask2former_r50_coco.py). Needs torchvision's ImageNet ResNet-101 locally (resnet101-63fe2227.pth); override
# with `--cfg-options backbone_checkpoint=/path/to/resnet101.pth`.
_base_ = './mask2former_r50_coco.py'
backbone_checkpoint = '~/.cache/torch/hub/checkpoints/resnet101-63fe2227.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)))
