# Per-frame Mask R-CNN + linking on the shapes clips: the image model of configs/mask_rcnn/mask_rcnn_shapes.py
# (shared ResNet-18 / 64-channel FPN / RPN stage one, its own second stage), trained on the clips' frames as
# images with the shapes schedule (1000 iterations of batch 8), then run frame by frame at test time with its
# instances linked into tracks by mask IoU (Hungarian, IoU >= 0.3, a lost track kept for 2 frames:
# mnc_bench/models/linking.py).
_base_ = ['../mask_rcnn/mask_rcnn_shapes.py', '../_base_/datasets/shapes_video.py']

detector = _base_.model
detector.pop('data_preprocessor')
model = dict(
    _delete_=True,
    type='FrameLinkVIS',
    data_preprocessor=_base_.video_frame_data_preprocessor,
    detector=detector,
    linker=dict(min_iou=0.3, max_age=2))

data_root = _base_.video_data_root
dataset_layout = _base_.video_dataset_layout
data_preprocessor = _base_.video_frame_data_preprocessor
synthetic_shapes = None
synthetic_videos = _base_.video_synthetic
train_dataloader = _base_.video_frame_train_dataloader
val_dataloader = _base_.video_test_dataloader
test_dataloader = _base_.video_test_dataloader
val_evaluator = _base_.video_evaluator
test_evaluator = _base_.video_evaluator
