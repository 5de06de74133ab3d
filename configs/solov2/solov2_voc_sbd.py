# SOLOv2 R50-FPN on VOC 2012 + SBD masks (20 classes), MNC's split; see _base_/datasets/voc_sbd.py.
_base_ = [
    '../_base_/models/solov2_r50_fpn.py',
    '../_base_/datasets/voc_sbd.py',
    '../_base_/schedules/voc_sbd.py',
]
model = dict(data_preprocessor=_base_.data_preprocessor, mask_head=dict(num_classes=20))
