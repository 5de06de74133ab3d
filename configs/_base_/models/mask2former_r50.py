# Mask2Former (Cheng et al. 2022), instance mode (80 thing classes, no stuff classes, panoptic and semantic
# outputs off; boxes are the masks' tight boxes), on the shared ResNet-50 of r50_fpn.py. Shared: the backbone
# exactly. Not shared: the FPN and the RPN. Mask2Former's pixel decoder (MSDeformAttnPixelDecoder: 6
# deformable-attention encoder layers over C3-C5 and an FPN-style lateral/output conv to stride 4, 256
# channels as the shared FPN) reads the same backbone outputs in the FPN's place. Head: mmdet 3.3's
# configs/mask2former/mask2former_r50_8xb2-lsj-50e_coco.py (100 queries, 9 masked-attention decoder layers,
# 12544 sampled points per mask, Hungarian matching) unchanged. mmdet's backbone keeps BN frozen
# (requires_grad=False, frozen_stages=-1); ours is the shared one. Runs on CPU through mmcv's pure-PyTorch
# multi-scale deformable attention.
_base_ = './r50_fpn.py'

num_things_classes = 80
model = dict(
    _delete_=True,  # drop the FPN and the RPN with its train/test settings; keep the backbone below
    type='Mask2Former',
    backbone=_base_.model.backbone,
    panoptic_head=dict(
        type='Mask2FormerHead',
        in_channels=_base_.model.neck.in_channels,  # the backbone's C2-C5, as the FPN reads them
        strides=[4, 8, 16, 32],
        feat_channels=256,
        out_channels=256,
        num_things_classes=num_things_classes,
        num_stuff_classes=0,
        num_queries=100,
        num_transformer_feat_level=3,
        pixel_decoder=dict(
            type='MSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=256, num_heads=8, num_levels=3, num_points=4, dropout=0.0,
                                       batch_first=True),
                    ffn_cfg=dict(embed_dims=256, feedforward_channels=1024, num_fcs=2, ffn_drop=0.0,
                                 act_cfg=dict(type='ReLU', inplace=True)))),
            positional_encoding=dict(num_feats=128, normalize=True)),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=128, normalize=True),
        transformer_decoder=dict(
            return_intermediate=True,
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0, batch_first=True),
                cross_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0, batch_first=True),
                ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, num_fcs=2, ffn_drop=0.0,
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
        num_points=12544,
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
        max_per_image=100,
        iou_thr=0.8,
        filter_low_score=True),
    init_cfg=None)
