# Cascade Mask R-CNN R50-FPN on VOC 2012 + SBD masks (20 classes), MNC's split; see
# _base_/datasets/voc_sbd.py.
_base_ = [
    '../_base_/models/cascade_mask_rcnn_r50_fpn.py',
    '../_base_/datasets/voc_sbd.py',
    '../_base_/schedules/voc_sbd.py',
]
model = dict(
    data_preprocessor=_base_.data_preprocessor,
    roi_head=dict(bbox_head=[dict(head, num_classes=20) for head in _base_.model.roi_head.bbox_head],
                  mask_head=dict(num_classes=20)))
