# Synthetic "shapes" (circle, triangle, rectangle, ring; 128 px) in COCO layout.
# Everything a comparison on shapes must hold equal lives here: pipeline, input size, normalisation and
# padding (data_preprocessor), batch size, evaluator. Model configs set
# `model = dict(data_preprocessor=_base_.data_preprocessor, ...)`; mnc_bench.training refuses a model whose
# data_preprocessor differs from this one.
#
# `mnc-bench train` writes the dataset (synthetic_shapes below) when data_root does not exist yet.
# Override the location with `--cfg-options data_root=DIR/`: every path derived from data_root follows.
dataset_type = 'CocoDataset'
data_root = 'data/shapes/'
classes = ('circle', 'triangle', 'rectangle', 'ring')
metainfo = dict(classes=classes, palette=[(220, 20, 60), (0, 128, 255), (255, 180, 0), (0, 170, 60)])
synthetic_shapes = dict(num_train=1000, num_val=200, image_size=128, seed=0)
image_size = 128
dataset_layout = ('data_root/annotations/instances_{train,val}.json and data_root/{train,val}/*.png '
                  '(written by `mnc-bench data synth --out DIR`; '
                  'generated automatically when data_root is missing)')
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
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
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
