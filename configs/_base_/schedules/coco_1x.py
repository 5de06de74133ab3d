# mmdet's standard 1x schedule: 12 epochs, lr 0.02 for a total batch of 16 (8 GPUs x 2 images),
# steps at epochs 8 and 11, 500-iteration linear warm-up.
# A schedule includes the shared runtime (hooks, logging, randomness); configs list it, not default_runtime.
_base_ = '../default_runtime.py'

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))

# `--cfg-options auto_scale_lr.enable=True` rescales lr linearly when the total batch differs from 16.
auto_scale_lr = dict(enable=False, base_batch_size=16)
