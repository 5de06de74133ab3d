# PANet (Liu et al. 2018) = Mask R-CNN + three switchable components (mnc_bench.baselines.panet):
#   bottom_up_path          neck PAFPN (FPN + bottom-up path augmentation) instead of FPN
#   adaptive_pooling        RoI features pooled from every FPN level, fused by element-wise max after the box
#                           head's first fc and after the mask head's first conv
#   fully_connected_fusion  mask head fc branch from conv3 (2 convs, fc) summed with the FCN mask logits
# Rerun the paper's ablation with e.g. `--cfg-options model.adaptive_pooling=False`.
# With all three off the model is exactly Mask R-CNN.
_base_ = './mask_rcnn_r50_fpn.py'

model = dict(
    type='PANet',
    bottom_up_path=True,
    adaptive_pooling=True,
    fully_connected_fusion=True,
    neck=dict(type='PAFPN'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='AdaptiveRoIExtractor'),
        bbox_head=dict(type='AFPBBoxHead'),
        mask_roi_extractor=dict(type='AdaptiveRoIExtractor'),
        mask_head=dict(type='FusedFCNMaskHead')))
