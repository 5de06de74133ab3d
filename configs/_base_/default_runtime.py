# Runtime shared by every model and dataset: hooks, logging, checkpointing, randomness.
# mnc_bench.training imports the MNC adapter and the PANet modules before building, so any config here builds.
default_scope = 'mmdet'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # timeout (our choice; mmengine's default is torch's, 10 minutes for NCCL): under distributed training the
    # other ranks wait in a broadcast while rank 0 scores the whole test set (COCO segm AP, VOC region AP,
    # Boundary AP on 5000 COCO images can take longer). It cannot change results: left out of run ids.
    dist_cfg=dict(backend='nccl', timeout=7200))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'

# `mnc-bench train --seed S` sets randomness.seed; deterministic=True trades speed for bitwise repeatability.
randomness = dict(seed=0, deterministic=False)

load_from = None
resume = False
