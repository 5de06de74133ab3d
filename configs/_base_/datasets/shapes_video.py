# Synthetic "shapes" clips (the shapes world in motion; 60 train and 20 val clips of 8-12 frames at 128 px) in
# YouTube-VIS's layout: what every model of the video comparison holds equal (frames, pipelines, input size,
# normalisation, padding, batch, evaluator). `mnc-bench train` writes the clips (`synthetic_videos` below)
# when data_root does not exist yet; `--cfg-options data_root=DIR/` moves every path derived from it.
#
# Every name here starts with `video_`: a video config inherits an image model config (whose `_base_` brings
# the image shapes dataset) together with this file, and mmengine refuses a key defined by two bases. The
# video config then points the run's sections at these (see configs/video/*.py).
#
# Three loaders on one set of frames:
#   video_frame_train_dataloader: single frames as a COCO dataset (the COCO-video file is a per-frame COCO
#       file), for the per-frame image models; the image shapes pipeline unchanged.
#   video_clip_train_dataloader: mmdet's YouTubeVISDataset, every frame once per epoch as a key frame
#       (TrackImgSampler) with one reference frame of its clip (UniformRefFrameSample: any frame, MaskTrack
#       R-CNN's recipe; Video MNC narrows it to a neighbour), both frames resized and flipped alike.
#   video_test_dataloader: whole clips, one per batch, in order (mmdet's VIS test loop).
video_data_root = 'data/shapes_video/'
video_classes = ('circle', 'triangle', 'rectangle', 'ring')
video_metainfo = dict(classes=video_classes,
                      palette=[(220, 20, 60), (0, 128, 255), (255, 180, 0), (0, 170, 60)])
video_synthetic = dict(num_train=60, num_val=20, image_size=128, seed=0, min_frames=8, max_frames=12)
video_image_size = 128
video_dataset_layout = ('data_root/annotations/instances_{train,val}.json (COCO-video) and '
                        'data_root/{train,val}/JPEGImages/<video>/<frame>.png (written by `mnc-bench data '
                        'synth-video --out DIR`; generated automatically when data_root is missing)')

# mean/std/padding of the image shapes' DetDataPreprocessor; TrackDataPreprocessor also stacks clips [N, T, C,
# H, W].
video_clip_data_preprocessor = dict(
    type='TrackDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_mask=True,
    pad_size_divisor=32)
# The per-frame models: image batches in training, clips at test time.
video_frame_data_preprocessor = dict(video_clip_data_preprocessor, use_det_processor=True)

video_frame_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(video_image_size, video_image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
video_clip_train_pipeline = [
    dict(type='UniformRefFrameSample', num_ref_imgs=1, frame_range=100, filter_key_img=True),
    dict(
        type='TransformBroadcaster',
        share_random_params=True,
        transforms=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadTrackAnnotations', with_mask=True),
            dict(type='Resize', scale=(video_image_size, video_image_size), keep_ratio=True),
            dict(type='RandomFlip', prob=0.5),
        ]),
    dict(type='PackTrackInputs'),
]
video_test_pipeline = [
    dict(
        type='TransformBroadcaster',
        transforms=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(video_image_size, video_image_size), keep_ratio=True),
            dict(type='LoadTrackAnnotations', with_mask=True),
        ]),
    dict(type='PackTrackInputs'),
]

video_frame_train_dataloader = dict(
    _delete_=True,
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='CocoDataset',
        data_root=video_data_root,
        metainfo=video_metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/JPEGImages/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=video_frame_train_pipeline))
video_clip_train_dataloader = dict(
    _delete_=True,
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='TrackImgSampler'),
    batch_sampler=dict(type='TrackAspectRatioBatchSampler'),
    dataset=dict(
        type='YouTubeVISDataset',
        dataset_version='2021',  # required by the class; the classes are ours (metainfo)
        data_root=video_data_root,
        metainfo=video_metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img_path='train/JPEGImages'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=video_clip_train_pipeline))
video_test_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type='YouTubeVISDataset',
        dataset_version='2021',
        data_root=video_data_root,
        metainfo=video_metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img_path='val/JPEGImages'),
        test_mode=True,
        pipeline=video_test_pipeline))

# mnc_bench.evaluation.video: YouTube-VIS video AP, per-frame mask AP, MOTS / HOTA / IDF1 and mask stability
# of the instances scoring >= score_thr; `mnc-bench test --out` makes it also write the tracked predictions.
video_evaluator = dict(
    _delete_=True,
    type='MNCBenchVideoMetric',
    ann_file=video_data_root + 'annotations/instances_val.json',
    score_thr=0.5)
