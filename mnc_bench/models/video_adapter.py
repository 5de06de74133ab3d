"""Where the video models meet mmdet: two video instance segmenters registered in mmdet's MODELS.

* ``FrameLinkVIS``: any image detector of this project (MNC, Mask R-CNN, ...) applied frame by frame, its
  instances linked into tracks by :class:`~mnc_bench.models.linking.MaskIoULinker`. It trains its detector on
  frames, exactly as the image model trains (``TrackDataPreprocessor(use_det_processor=True)``: image batches
  in training, clips at test time).
* ``VideoMNC``: MNC seeded by time (:mod:`mnc_bench.models.mnc.temporal`). It trains on clips, a key frame and
  a neighbouring frame: the neighbour's ground-truth boxes stand for the previous frame's final instances and
  join the key frame's proposals before stage 2 samples its RoIs, so the cascade learns on the inputs it is
  seeded with at test time.

Both keep the detector under ``detector.``, so their checkpoints are interchangeable: a per-frame MNC
checkpoint runs as Video MNC and the other way round. Test-time inputs are mmdet's video batches ([1, T, C, H,
W] with a ``TrackDataSample``; a clip's state resets at its frame 0), outputs each frame's ``pred_instances``
and ``pred_track_instances`` (with ``instances_id``), as mmdet's MaskTrack R-CNN gives them::

    model = dict(type='FrameLinkVIS', detector=dict(type='MaskRCNN', ...),
                 linker=dict(min_iou=0.3, max_age=2),
                 data_preprocessor=dict(type='TrackDataPreprocessor', use_det_processor=True, ...))
    model = dict(type='VideoMNC', detector=dict(type='MNC', ...),
                 seeding=dict(mode='join', max_age=2, max_propagated=100),
                 data_preprocessor=dict(type='TrackDataPreprocessor', ...))
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from mmdet.models.mot import BaseMOTModel
from mmdet.registry import MODELS
from mmdet.structures import TrackSampleList
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

from mnc_bench.errors import ConfigError
from mnc_bench.models.linking import MaskIoULinker
from mnc_bench.models.mmdet_adapter import MNC, detection_instances
from mnc_bench.models.mnc import ParameterError
from mnc_bench.models.mnc.temporal import TemporalSeeding


def _section(config: Mapping | None, where: str, cls: type) -> dict:
    settings = dict(config or {})
    allowed = [name for name in cls.__dataclass_fields__ if not name.startswith("_")]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {allowed}")
    return settings


def _track_instances(instances: InstanceData, ids: Tensor) -> InstanceData:
    tracked = instances.clone()
    tracked.instances_id = ids.to(instances.scores.device)
    return tracked


def _frames(inputs: Tensor, data_samples: TrackSampleList):
    """(frame batch [1, C, H, W], its DetDataSample) of the one clip of a test batch."""
    if inputs.dim() != 5 or len(data_samples) != 1:
        raise ValueError(
            "video models take one clip per test batch: inputs [1, T, C, H, W] (test batch size 1)"
        )
    for t, frame in enumerate(data_samples[0]):
        yield inputs[:, t].contiguous(), frame


@MODELS.register_module()
class FrameLinkVIS(BaseMOTModel):
    """An image detector per frame plus mask-IoU linking (see the module docstring)."""

    def __init__(
        self,
        detector: ConfigType,
        linker: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(data_preprocessor, init_cfg)
        self.detector = MODELS.build(detector)
        try:
            self.linker = MaskIoULinker(**_section(linker, "model.linker", MaskIoULinker))
        except ValueError as error:
            raise ConfigError(f"model.linker.{error}") from None

    def loss(self, inputs: Tensor, data_samples, **kwargs) -> dict:
        """The detector's losses on a batch of frames [B, C, H, W]."""
        if inputs.dim() != 4:
            raise ConfigError(
                "train_dataloader: FrameLinkVIS trains its detector on single frames (the "
                "frame_train_dataloader of configs/_base_/datasets/shapes_video.py), got clips"
            )
        return self.detector.loss(inputs, data_samples)

    def predict(self, inputs: Tensor, data_samples: TrackSampleList, rescale: bool = True) -> TrackSampleList:
        for image, frame in _frames(inputs, data_samples):
            if frame.frame_id == 0:
                self.linker.reset()
            instances = self.detector.predict(image, [frame], rescale=rescale)[0].pred_instances
            frame.pred_instances = instances
            frame.pred_track_instances = _track_instances(instances, self.linker.step(instances.masks.bool()))
        return data_samples

    def _forward(self, inputs: Tensor, data_samples=None):
        raise NotImplementedError("FrameLinkVIS has no tensor mode; use mode='predict'")


@MODELS.register_module()
class VideoMNC(BaseMOTModel):
    """MNC whose cascade is seeded by the previous frame's final instances (see the module docstring)."""

    def __init__(
        self,
        detector: ConfigType,
        seeding: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(data_preprocessor, init_cfg)
        self.detector = MODELS.build(detector)
        if not isinstance(self.detector, MNC):
            raise ConfigError(
                f"model.detector.type: VideoMNC seeds MNC's cascade, got {type(self.detector).__name__}"
            )
        try:
            self.seeding = TemporalSeeding(**_section(seeding, "model.seeding", TemporalSeeding))
        except ParameterError as error:
            raise ConfigError(f"model.{error.parameter}: {error.reason}") from None

    def loss(self, inputs: Tensor, data_samples: TrackSampleList, **kwargs) -> dict:
        """MNC's losses on each clip's key frame, the other frame's ground-truth boxes among its proposals."""
        if inputs.dim() != 5 or inputs.size(1) != 2:
            raise ConfigError(
                "train_dataloader: VideoMNC trains on a key frame and one reference frame per clip "
                "(the clip_train_dataloader of configs/_base_/datasets/shapes_video.py)"
            )
        keys, key_samples, seeds = [], [], []
        for b, clip in enumerate(data_samples):
            keys.append(inputs[b, clip.key_frames_inds[0]])
            key_samples.append(clip.get_key_frames()[0])
            seeds.append(get_box_tensor(clip.get_ref_frames()[0].gt_instances.bboxes))
        return self.detector.loss(torch.stack(keys), key_samples, extra_proposals=seeds)

    def predict(self, inputs: Tensor, data_samples: TrackSampleList, rescale: bool = True) -> TrackSampleList:
        mnc, post = self.detector, self.detector.postprocessor
        for image, frame in _frames(inputs, data_samples):
            if frame.frame_id == 0:
                self.seeding.reset()
            meta = frame.metainfo
            image_size, scale = (
                (tuple(meta["ori_shape"][:2]), tuple(meta["scale_factor"]))
                if rescale
                else (tuple(meta["img_shape"][:2]), (1.0, 1.0))
            )
            features = mnc.extract_feat(image)
            seeds = self.seeding.seed(mnc.proposals(features, [frame])[0], scale)
            output = mnc.cascade.predict(features, [seeds.proposals], [tuple(meta["img_shape"][:2])])[0]
            detections = post(output, image_size=image_size, scale=scale)
            ids = self.seeding.associate(
                seeds, output, detections, score_thr=post.score_thr, nms_iou=post.nms_iou
            )
            frame.pred_instances = detection_instances(detections)
            frame.pred_track_instances = _track_instances(frame.pred_instances, ids)
        return data_samples

    def _forward(self, inputs: Tensor, data_samples=None):
        raise NotImplementedError("VideoMNC has no tensor mode; use mode='predict'")
