# MaskTrack R-CNN (Yang, Fan, Xu, ICCV 2019; mmdet 3.3's MaskTrackRCNN) on the shapes clips: the Mask R-CNN of
# configs/mask_rcnn/mask_rcnn_shapes.py as its detector (shared ResNet-18 / 64-channel FPN / RPN stage one)
# plus mmdet's tracking head: an embedding of each RoI (RoIEmbedHead, 2 fc layers, narrowed to 256 like the
# box head's fc layers) trained by matching the key frame's RoIs to the instances of a reference frame of the
# same clip, and the tracker that scores a match by embedding similarity, detection score, box IoU and label
# agreement (mmdet's match weights, 20 frames of memory). Everything else follows mmdet's
# configs/masktrack_rcnn/masktrack-rcnn_mask-rcnn_r50_fpn_8xb1-12e_youtubevis2019.py; the schedule is the
# shapes one (1000 iterations of batch 8 key frames, each with its reference frame). mmdet's recipe
# initialises the whole detector from a COCO-trained Mask R-CNN (`detector.init_cfg`); the video_consistency
# suite starts it from its per-frame Mask R-CNN run of the same seed (`start_from`, docs/suites.md). Trained
# alone (`mnc-bench train` of this config), detector and tracking head start from scratch.
_base_ = ['../mask_rcnn/mask_rcnn_shapes.py', '../_base_/datasets/shapes_video.py']

detector = _base_.model
detector.pop('data_preprocessor')
model = dict(
    _delete_=True,
    type='MaskTrackRCNN',
    data_preprocessor=_base_.video_clip_data_preprocessor,
    detector=detector,
    track_head=dict(
        type='RoITrackHead',
        roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=_base_.box_roi_layer,
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        embed_head=dict(type='RoIEmbedHead', num_fcs=2, roi_feat_size=7, in_channels=64, fc_out_channels=256),
        train_cfg=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False)),
    tracker=dict(
        type='MaskTrackRCNNTracker',
        match_weights=dict(det_score=1.0, iou=2.0, det_label=10.0),
        num_frames_retain=20))

data_root = _base_.video_data_root
dataset_layout = _base_.video_dataset_layout
data_preprocessor = _base_.video_clip_data_preprocessor
synthetic_shapes = None
synthetic_videos = _base_.video_synthetic
train_dataloader = _base_.video_clip_train_dataloader
val_dataloader = _base_.video_test_dataloader
test_dataloader = _base_.video_test_dataloader
val_evaluator = _base_.video_evaluator
test_evaluator = _base_.video_evaluator
