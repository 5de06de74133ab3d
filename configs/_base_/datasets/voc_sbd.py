# PASCAL VOC 2012 with SBD instance masks, converted to COCO json by
#   mnc-bench data sbd2coco --sbd SBD/benchmark_RELEASE/dataset --voc VOCdevkit/VOC2012 --out data/voc_sbd
# which writes data_root/annotations/instances_{train,val}.json and data_root/images (-> VOC JPEGImages).
# Default split: MNC's (VOC 2012 train/val images that have SBD masks: 5623 / 5732 images).
# Shorter side 600 as in MNC (max 1000). Everything a comparison on VOC holds equal lives here.
dataset_type = 'CocoDataset'
data_root = 'data/voc_sbd/'
classes = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
           'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
           'tvmonitor')
metainfo = dict(classes=classes)
dataset_layout = ('data_root/annotations/instances_{train,val}.json and data_root/images/*.jpg '
                  '(written by `mnc-bench data sbd2coco --sbd SBD/dataset --voc VOCdevkit/VOC2012 '
                  '--out DIR`)')
backend_args = None

data_preprocessor = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_mask=True,
    pad_size_divisor=32)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1000, 600), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1000, 600), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# mnc_bench.evaluation's metric: COCO AP/AR (pycocotools) for segm and bbox, plus VOC region AP under the SDS
# and MNC protocols; `mnc-bench test --out` makes it also write the predictions.
val_evaluator = dict(
    type='MNCBenchMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric=('coco', 'voc_sds', 'voc_mnc'),
    iou_type=('segm', 'bbox'))
test_evaluator = val_evaluator
