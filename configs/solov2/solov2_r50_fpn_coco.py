# SOLOv2 R50-FPN, COCO 2017, on the shared COCO path (pipeline, 1x schedule, evaluator) — mmdet 3.3's
# configs/solov2/solov2_r50_fpn_1x_coco.py (zoo: mask 34.8). mmdet trains it at lr 0.01 with gradient clipping
# (max_norm 35); the shared 1x schedule is lr 0.02 without clipping. To follow mmdet, add `--cfg-options
# optim_wrapper.optimizer.lr=0.01 optim_wrapper.clip_grad.max_norm=35 optim_wrapper.clip_grad.norm_type=2`
# (then it is a model-specific schedule: label the row). Needs local ImageNet weights: see
# configs/_base_/models/r50_fpn.py (backbone_checkpoint).
_base_ = [
    '../_base_/models/solov2_r50_fpn.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]
model = dict(data_preprocessor=_base_.data_preprocessor)
