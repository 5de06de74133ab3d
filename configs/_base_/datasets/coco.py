# COCO 2017 instance segmentation from a user-given root (nothing downloads):
#   data_root/annotations/instances_train2017.json, data_root/annotations/instances_val2017.json,
#   data_root/train2017/*.jpg, data_root/val2017/*.jpg
# Point at it with `--cfg-options data_root=/path/to/coco/`; every path derived from data_root follows.
# Everything a comparison on COCO holds equal lives here (pipeline, input size, normalisation and padding,
# batch size per GPU, evaluator). Model configs set
# `model = dict(data_preprocessor=_base_.data_preprocessor)`.
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
dataset_layout = ('COCO 2017: data_root/annotations/instances_{train,val}2017.json, '
                  'data_root/train2017/*.jpg, data_root/val2017/*.jpg')
backend_args = None

# ImageNet statistics (RGB) of torchvision's pretrained ResNets.
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
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
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
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
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
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# mnc_bench.evaluation's metric: COCO AP/AR (pycocotools) for segm and bbox;
# `mnc-bench test --out` makes it also write the predictions.
val_evaluator = dict(
    type='MNCBenchMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=('coco',),
    iou_type=('segm', 'bbox'))
test_evaluator = val_evaluator
