# VOC 2012 train (SBD masks, 5623 images in the MNC split): 24 epochs at a total batch of 16
# (about 8.4k iterations, ~135k images seen; MNC-code saw 25k x 8 = 200k), lr 0.02, steps at 16 and 22.
# A schedule includes the shared runtime (hooks, logging, randomness); configs list it, not default_runtime.
_base_ = '../default_runtime.py'

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))

auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=3))
