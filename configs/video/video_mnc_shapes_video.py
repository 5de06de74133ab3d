# Video MNC on the shapes clips: MNC 5-stage (configs/mnc/mnc_5stage_shapes.py, same stage one and heads)
# whose cascade is seeded by time (mnc_bench/models/mnc/temporal.py). At test time the boxes of the tracks
# seen in the last 2 frames join the RPN's 300 proposals (seeding.mode='join': objects that enter are still
# found; 'replace' would give stage 2 only the propagated boxes, a tracker blind to new objects) and each
# detection continues the track of the seeded instance it keeps or suppressed in NMS. Training (the shapes
# schedule, 1000 iterations of batch 8 key frames) shows the cascade what it is seeded with: the ground-truth
# boxes of a neighbouring frame (frame_range=1: the previous or the next) join the key frame's proposals
# before RoI sampling. The weights are MNC's (`detector.`): a per-frame MNC checkpoint
# (mnc_5stage_linked_shapes_video.py) runs here as it is.
_base_ = ['../mnc/mnc_5stage_shapes.py', '../_base_/datasets/shapes_video.py']

detector = _base_.model
detector.pop('data_preprocessor')
model = dict(
    _delete_=True,
    type='VideoMNC',
    data_preprocessor=_base_.video_clip_data_preprocessor,
    detector=detector,
    seeding=dict(mode='join', max_age=2, max_propagated=100))

data_root = _base_.video_data_root
dataset_layout = _base_.video_dataset_layout
data_preprocessor = _base_.video_clip_data_preprocessor
synthetic_shapes = None
synthetic_videos = _base_.video_synthetic
train_dataloader = _base_.video_clip_train_dataloader
train_dataloader.dataset.pipeline[0].frame_range = 1
val_dataloader = _base_.video_test_dataloader
test_dataloader = _base_.video_test_dataloader
val_evaluator = _base_.video_evaluator
test_evaluator = _base_.video_evaluator
