# Short CPU schedule for the synthetic shapes data (iteration based, one validation at the end).
# Identical for every model compared on shapes. Tuned for the small models trained from scratch (AdamW,
# lr 5e-4, weight decay 0.05; our choice). 1000 iterations of batch 8 (8 epochs of shapes-train; lr / 10 at
# 75 % and 90 %; our choice) keep one run of a shapes model within minutes to an hour on 2 CPU cores; longer
# runs still gain (the small Mask R-CNN: mask AP 0.43 at iteration 1000 without the lr steps, 0.53 at 1500).
# To lengthen it, write a config that inherits a model config and sets max_iters, train_cfg and
# param_scheduler as below.
# A schedule includes the shared runtime (hooks, logging, randomness); configs list it, not default_runtime.
_base_ = '../default_runtime.py'

max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))

auto_scale_lr = dict(enable=False, base_batch_size=8)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
