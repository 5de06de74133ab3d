# Small CPU Mask2Former (Cheng et al. 2022) on the synthetic shapes, instance mode: 4 thing classes, no stuff
# classes, panoptic and semantic outputs off, instance masks (boxes = the masks' tight boxes) out. No RPN, no
# RoIs, no NMS: learned queries attend to the image through a transformer decoder whose cross-attention is
# masked by each query's previous mask; Hungarian matching assigns queries to objects.
#
# Shared with every shapes model: the backbone exactly (ResNet-18 from scratch,
# _base_/models/r18_fpn_small.py), data, schedule, evaluator. Not shared: the FPN neck and the RPN.
# Mask2Former's pixel decoder (MSDeformAttnPixelDecoder: a deformable-attention encoder over C3-C5 plus an
# FPN-style lateral/output conv to stride 4) takes the place of the FPN, reading the same backbone outputs
# (in_channels = the FPN's) at the same 64-channel width as the shared neck.
#
# Head: mmdet 3.3's configs/mask2former/mask2former_r50_8xb2-lsj-50e_coco.py (its panoptic base,
# instance-only), narrowed for CPU (our choice): 256 -> 64 channels (positional encoding 128 -> 32 features),
# FFN 1024 / 2048 -> 256 / 512 (mmdet's 4x / 8x ratios), 100 -> 25 queries (shapes images hold 1-6 objects; 25
# queries x 4 classes = 100 candidates = max_per_image, the detection cap of every shapes model), 12544 ->
# 1024 sampled points per mask (the 32 x 32 mask logits of a 128 px image hold 1024 pixels). Depth, losses,
# matching costs, class weights: mmdet's (6 encoder layers; 9 decoder layers = 3 masked-attention rounds over
# the 3 levels, each supervised). The narrowing is for CPU cost: mmdet's 100 queries and 12544 points make a
# training step several times dearer (this config's measured cost: docs/benchmarks.md).
#
# Runs on CPU through mmcv's pure-PyTorch multi-scale deformable attention (mmcv 2.1 falls back to it whenever
# the input is not on a CUDA/MLU device). Mask2Former is known to need long schedules (mmdet: 50 epochs of
# LSJ, AdamW 1e-4); the shared 1000-iteration shapes schedule applies here unchanged.
_base_ = [
    '../_base_/models/r18_fpn_small.py',
    '../_base_/datasets/shapes.py',
    '../_base_/schedules/shapes_cpu.py',
]
num_things_classes = 4
num_queries = 25
model = dict(
    _delete_=True,  # drop the shared FPN and RPN with its train/test settings; keep the backbone below
    type='Mask2Former',
    data_preprocessor=_base_.data_preprocessor,
    backbone=_base_.model.backbone,
    panoptic_head=dict(
        type='Mask2FormerHead',
        in_channels=_base_.model.neck.in_channels,  # the backbone's C2-C5, as the FPN reads them
        strides=[4, 8, 16, 32],
        feat_channels=_base_.neck_channels,
        out_channels=_base_.neck_channels,
        num_things_classes=num_things_classes,
        num_stuff_classes=0,
        num_queries=num_queries,
        num_transformer_feat_level=3,
        pixel_decoder=dict(
            type='MSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=64, num_heads=8, num_levels=3, num_points=4, dropout=0.0,
                                       batch_first=True),
                    ffn_cfg=dict(embed_dims=64, feedforward_channels=256, num_fcs=2, ffn_drop=0.0,
                                 act_cfg=dict(type='ReLU', inplace=True)))),
            positional_encoding=dict(num_feats=32, normalize=True)),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=32, normalize=True),
        transformer_decoder=dict(
            return_intermediate=True,
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=64, num_heads=8, dropout=0.0, batch_first=True),
                cross_attn_cfg=dict(embed_dims=64, num_heads=8, dropout=0.0, batch_first=True),
                ffn_cfg=dict(embed_dims=64, feedforward_channels=512, num_fcs=2, ffn_drop=0.0,
                             act_cfg=dict(type='ReLU', inplace=True))),
            init_cfg=None),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0, reduction='mean',
                      class_weight=[1.0] * num_things_classes + [0.1]),  # last: "no object"
        loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='mean', loss_weight=5.0),
        loss_dice=dict(type='DiceLoss', use_sigmoid=True, activate=True, reduction='mean', naive_dice=True,
                       eps=1.0, loss_weight=5.0)),
    panoptic_fusion_head=dict(
        type='MaskFormerFusionHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=0,
        loss_panoptic=None,
        init_cfg=None),
    train_cfg=dict(
        num_points=1024,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=2.0),
                dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
                dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0),
            ]),
        sampler=dict(type='MaskPseudoSampler')),
    test_cfg=dict(
        panoptic_on=False,
        semantic_on=False,
        instance_on=True,
        max_per_image=num_queries * num_things_classes,
        iou_thr=0.8,
        filter_low_score=True),
    init_cfg=None)
