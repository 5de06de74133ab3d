# Small CPU PANet on the synthetic shapes: mask_rcnn_shapes.py plus PANet's three switchable components
# (see configs/_base_/models/panet_r50_fpn.py for what each switch does).
_base_ = '../mask_rcnn/mask_rcnn_shapes.py'
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
