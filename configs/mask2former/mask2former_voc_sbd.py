# Mask2Former R50, instance mode, on VOC 2012 + SBD masks (20 classes), MNC's split; see
# _base_/datasets/voc_sbd.py and, for how the shared schedule differs from Mask2Former's own,
# mask2former_r50_coco.py.
_base_ = [
    '../_base_/models/mask2former_r50.py',
    '../_base_/datasets/voc_sbd.py',
    '../_base_/schedules/voc_sbd.py',
]
num_things_classes = 20
model = dict(
    data_preprocessor=_base_.data_preprocessor,
    panoptic_head=dict(num_things_classes=num_things_classes,
                       loss_cls=dict(class_weight=[1.0] * num_things_classes + [0.1])),
    panoptic_fusion_head=dict(num_things_classes=num_things_classes))
