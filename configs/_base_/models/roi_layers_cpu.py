# The RoI layers of every mmdet second stage on shapes (Mask R-CNN, PANet, Cascade Mask R-CNN, HTC; MNC warps
# its own RoIs): mmdet's RoIAlign (aligned, adaptive sampling) computed by mnc_bench/models/roi_align.py,
# whose outputs equal mmcv's RoIAlign bit for bit and whose gradients match to float rounding, with a CPU
# backward 2-5x faster than mmcv's (our choice for CPU training; the full-size configs keep mmcv's op for its
# CUDA kernels).
box_roi_layer = dict(type='SeparableRoIAlign', output_size=7, sampling_ratio=0)
mask_roi_layer = dict(type='SeparableRoIAlign', output_size=14, sampling_ratio=0)
