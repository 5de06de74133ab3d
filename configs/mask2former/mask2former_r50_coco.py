# Mask2Former R50, instance mode, COCO 2017, on the shared COCO path: the shared pipeline (1333x800 resize,
# flip), 1x schedule (SGD lr 0.02, 12 epochs) and evaluator. mmdet 3.3's configs/mask2former/
# mask2former_r50_8xb2-lsj-50e_coco.py (zoo: box 45.7 / mask 42.9) trains very differently: large-scale
# jittering (1024x1024 crops, scale 0.1-2), AdamW lr 1e-4 (backbone x0.1, no decay on query/level embeddings),
# gradient clipping at 0.01, 368,750 iterations of batch 16 (50 epochs). Transformers rarely train well with
# SGD and 12 epochs, so expect this row well below mmdet's; a run with mmdet's recipe is a model-specific
# schedule (label it). Needs local ImageNet weights: see configs/_base_/models/r50_fpn.py
# (backbone_checkpoint).
_base_ = [
    '../_base_/models/mask2former_r50.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/coco_1x.py',
]
model = dict(data_preprocessor=_base_.data_preprocessor)
