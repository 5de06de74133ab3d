"""The one place MNC meets mmdet: an mmdet detector `MNC` wrapping the plain-PyTorch cascade.

Backbone, neck and RPN head are built through mmdet's registry from the same config dicts as the Mask R-CNN
baseline, so a comparison differs only in what follows stage 1. Everything after the RPN is
`mnc_bench.models.mnc`, built here from the config (this module is its only `from_config`).

Config of `type="MNC"`. Every MNC setting left out takes the default of `mnc_bench.models.mnc.MNCConfig`
(the paper's / MNC-code's values, documented there); this module only maps config keys to those settings::

    model = dict(
        type="MNC",
        data_preprocessor=...,  backbone=...,  neck=... (optional),  rpn_head=dict(type="RPNHead", ...),
        cascade=dict(                         # MNCConfig fields
            num_classes=80, num_stages=5, share_weights=True, box_grad=True, box_grad_clip=1 / 512,
            stage3_labels="both",             # "box" | "mask" | "both" (MNC-code): stage 3's classifiers
            featmap_strides=[16],             # [4, 8, 16, 32] for FPN features
            in_channels=None,                 # default: neck.out_channels; required without a neck
            finest_scale=56, warp_size=28, mask_size=28, mask_hidden_dim=256, cls_pooled_size=7,
            cls_fc_dim=4096, cls_num_fcs=2, box_target_stds=(0.1, 0.1, 0.2, 0.2),
            seg_label_mask_thr=0.4, seg_label_iou=0.5),
        loss_weights=dict(rpn_cls=1.0, rpn_box=1.0, mask=1.0, cls=1.0, box=1.0),  # mask/cls/box: a number
                                                                                  # or one per round
        proposal_control=None,  # or dict(mode="rpn"|"oracle"|"random", max_proposals, jitter, oracle_iou,
                                #         oracle_per_gt, num_random, min_random_size, apply_at, seed)
        train_cfg=dict(
            rpn=dict(assigner=..., sampler=..., allowed_border=-1, pos_weight=-1, debug=False),  # mmdet's
            rpn_proposal=dict(nms_pre=1000, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7),
                              min_bbox_size=0),
            rcnn=dict(num_rois=64, fg_fraction=0.25, fg_iou=0.5, bg_iou_ranges=[(0.0, 0.5)],
                      bg_fractions=[1.0])),                                         # RoISampling
        test_cfg=dict(
            rpn=dict(nms_pre=1000, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.05, nms_iou=0.3, max_per_img=100, mask_thr=0.4, mask_voting=True,
                      voting_iou=0.5, voting_resolution=56)))                      # MNCPostProcessor

Invalid values raise `mnc_bench.errors.ConfigError` naming the config key ("model.cascade.num_stages: ...").
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.dist import get_rank
from mmengine.structures import InstanceData
from torch import Tensor

from mnc_bench.errors import ConfigError
from mnc_bench.models.mnc import (
    Detections,
    InstanceTargets,
    MNCCascade,
    MNCConfig,
    MNCPostProcessor,
    ParameterError,
    ProposalControl,
    RoISampling,
    StageLossWeights,
)
from mnc_bench.models.rpn_proposals import rpn_proposals


def _arguments(cls: type, *, excluding: tuple[str, ...] = ()) -> tuple[str, ...]:
    names = [p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY]
    return tuple(name for name in names if name not in excluding)


# The one table between config keys and the core's settings: section of `model` -> {key: core parameter}.
# Core parameters are `MNCConfig` paths (as `ParameterError.parameter` names them) and ProposalControl's
# arguments; errors about a parameter are reported under its config key.
_SECTIONS: dict[str, dict[str, str]] = {
    "cascade": {name: name for name in MNCConfig.field_names() if name not in ("loss_weights", "sampling")},
    "loss_weights": {term.name: f"loss_weights.{term.name}" for term in dataclasses.fields(StageLossWeights)},
    "train_cfg.rcnn": {field.name: f"sampling.{field.name}" for field in dataclasses.fields(RoISampling)},
    "proposal_control": {
        name: f"proposal_control.{name}" for name in _arguments(ProposalControl, excluding=("rank",))
    },
}
_CONFIG_KEYS: dict[str, str] = {
    parameter: f"model.{section}.{key}" for section, keys in _SECTIONS.items()
    for key, parameter in keys.items()
}
# Settings of mmdet's RPN that only this adapter reads: its loss weights and the proposal decoder's numbers.
_RPN_LOSS_WEIGHT_DEFAULTS: dict[str, float] = dict(rpn_cls=1.0, rpn_box=1.0)
_RPN_PROPOSAL_DEFAULTS: dict[str, Any] = dict(
    nms_pre=1000, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
)


def _config_error(error: ParameterError) -> ConfigError:
    """The core's error about one of its parameters, reported under that parameter's config key."""
    return ConfigError(f"{_CONFIG_KEYS[error.parameter]}: {error.reason}")


def _section(config: Mapping | None, where: str, allowed: Sequence[str]) -> dict[str, Any]:
    """`config` as a dict whose keys are all in `allowed` (else a ConfigError naming `where`)."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return config


def _check_registered(config: Mapping | None, where: str) -> None:
    if config is None:
        return
    if not isinstance(config, Mapping) or "type" not in config:
        raise ConfigError(f"{where}: must be a dict with a 'type'")
    if isinstance(config["type"], str) and MODELS.get(config["type"]) is None:
        raise ConfigError(f"{where}.type: unknown type {config['type']!r} (not in mmdet's MODELS registry)")


def build_cascade(
    cascade: Mapping | None,
    loss_weights: Mapping | None,
    rcnn_train: Mapping | None,
    *,
    neck_channels: int | None,
) -> MNCCascade:
    """`MNCCascade` from `model.cascade`, the MNC terms of `model.loss_weights` and `train_cfg.rcnn`."""
    settings = _section(cascade, "model.cascade", list(_SECTIONS["cascade"]))
    weight_keys = [*_SECTIONS["loss_weights"], *_RPN_LOSS_WEIGHT_DEFAULTS]
    weights = _section(loss_weights, "model.loss_weights", weight_keys)
    sampling = _section(rcnn_train, "model.train_cfg.rcnn", list(_SECTIONS["train_cfg.rcnn"]))
    if settings.get("in_channels") is None:
        settings["in_channels"] = neck_channels
    if settings["in_channels"] is None:
        raise ConfigError("model.cascade.in_channels: required when the model has no neck")
    if neck_channels is not None and settings["in_channels"] != neck_channels:
        raise ConfigError(
            f"model.cascade.in_channels: {settings['in_channels']} != neck.out_channels {neck_channels}"
        )
    try:
        config = MNCConfig(
            **{_SECTIONS["cascade"][key]: value for key, value in settings.items()},
            loss_weights=StageLossWeights(
                **{k: weights[k] for k in _SECTIONS["loss_weights"] if k in weights}),
            sampling=RoISampling(**sampling),
        )
        return MNCCascade.from_config(config)
    except ParameterError as error:
        raise _config_error(error) from None


def _proposal_settings(config: Mapping | None, where: str) -> dict[str, Any]:
    """mmdet's RPN proposal config (nms_pre, max_per_img, nms, min_bbox_size) as `rpn_proposals` kwargs."""
    cfg = {**_RPN_PROPOSAL_DEFAULTS, **_section(config, where, list(_RPN_PROPOSAL_DEFAULTS))}
    nms = dict(cfg["nms"])
    if nms.get("type", "nms") != "nms" or "iou_threshold" not in nms:
        raise ConfigError(f"{where}.nms: only dict(type='nms', iou_threshold=...) is supported, got {nms}")
    if not 0.0 < nms["iou_threshold"] <= 1.0:
        raise ConfigError(f"{where}.nms.iou_threshold: must be in (0, 1], got {nms['iou_threshold']}")
    if cfg["max_per_img"] < 1:
        raise ConfigError(f"{where}.max_per_img: must be >= 1, got {cfg['max_per_img']}")
    return dict(
        nms_pre=int(cfg["nms_pre"]),
        max_per_img=int(cfg["max_per_img"]),
        nms_iou=float(nms["iou_threshold"]),
        min_bbox_size=float(cfg["min_bbox_size"]),
    )


def _build_postprocessor(config: Mapping | None) -> MNCPostProcessor:
    settings = _section(config, "model.test_cfg.rcnn", _arguments(MNCPostProcessor))
    try:
        return MNCPostProcessor(**settings)
    except ValueError as error:  # "argument: reason", and each argument is its own config key
        raise ConfigError(f"model.test_cfg.rcnn.{error}") from None


def _build_proposal_control(config: Mapping | None) -> ProposalControl:
    settings = _section(config, "model.proposal_control", list(_SECTIONS["proposal_control"]))
    try:
        return ProposalControl(**settings, rank=get_rank())
    except ParameterError as error:
        raise _config_error(error) from None


def _image_sizes(batch_data_samples: SampleList) -> list[tuple[int, int]]:
    """(height, width) of each unpadded network input."""
    return [tuple(s.metainfo["img_shape"][:2]) for s in batch_data_samples]


def _gt_boxes(data_sample, *, training: bool) -> Tensor:
    """Ground-truth boxes [G, 4] in network-input pixels. mmdet's test pipelines load annotations after
    `Resize` (so evaluation sees the original image's boxes): at test time they are scaled like the image."""
    boxes = get_box_tensor(data_sample.gt_instances.bboxes)
    if training:
        return boxes
    scale_x, scale_y = data_sample.metainfo.get("scale_factor", (1.0, 1.0))[:2]
    return boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])


def detection_instances(detections: Detections) -> InstanceData:
    """mmdet's ``pred_instances`` of one image's detections (with ``soft_masks`` when they were asked for)."""
    fields = dict(bboxes=detections.boxes, scores=detections.scores, labels=detections.labels,
                  masks=detections.masks)
    if detections.soft_masks is not None:
        fields["soft_masks"] = detections.soft_masks
    return InstanceData(**fields)


@MODELS.register_module()
class MNC(BaseDetector):
    """MNC as an mmdet detector: mmdet backbone/neck/RPN (stage 1) + `MNCCascade` (stages 2..num_stages)."""

    def __init__(
        self,
        backbone: ConfigType,
        rpn_head: ConfigType,
        cascade: ConfigType,
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        neck: OptConfigType = None,
        loss_weights: OptConfigType = None,
        proposal_control: OptConfigType = None,
        data_preprocessor: OptConfigType = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        _check_registered(backbone, "model.backbone")
        _check_registered(neck, "model.neck")
        _check_registered(rpn_head, "model.rpn_head")
        train_cfg = dict(train_cfg or {})
        test_cfg = dict(test_cfg or {})
        loss_weights = dict(loss_weights or {})
        rpn_weights = {key: loss_weights.get(key, value) for key, value in _RPN_LOSS_WEIGHT_DEFAULTS.items()}
        for name, weight in rpn_weights.items():
            if weight < 0:
                raise ConfigError(f"model.loss_weights.{name}: must be >= 0, got {weight}")
        self.rpn_loss_weights = dict(
            loss_rpn_cls=float(rpn_weights["rpn_cls"]), loss_rpn_bbox=float(rpn_weights["rpn_box"])
        )

        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        rpn_head = dict(rpn_head)
        if rpn_head.get("num_classes", 1) != 1:
            raise ConfigError(f"model.rpn_head.num_classes: must be 1, got {rpn_head['num_classes']}")
        rpn_head.update(num_classes=1, train_cfg=train_cfg.get("rpn"), test_cfg=test_cfg.get("rpn"))
        self.rpn_head = MODELS.build(rpn_head)

        neck_channels = neck.get("out_channels") if neck else None
        self.cascade = build_cascade(
            cascade, loss_weights, train_cfg.get("rcnn"), neck_channels=neck_channels
        )
        self.train_proposals = _proposal_settings(
            train_cfg.get("rpn_proposal"), "model.train_cfg.rpn_proposal"
        )
        self.test_proposals = _proposal_settings(test_cfg.get("rpn"), "model.test_cfg.rpn")
        self.postprocessor = _build_postprocessor(test_cfg.get("rcnn"))
        self.proposal_control = _build_proposal_control(proposal_control)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        # The factor a GradScaler multiplies the loss by under mixed precision (kept current by
        # mnc_bench.amp.LossScaleHook): the box-gradient clamp bounds the true gradient, not the scaled one.
        self.loss_scale = 1.0

    def extract_feat(self, batch_inputs: Tensor) -> tuple[Tensor, ...]:
        """[B, 3, H, W] -> per-level features [B, C, H_l, W_l]."""
        features = self.backbone(batch_inputs)
        return self.neck(features) if self.with_neck else tuple(features)

    def _proposals(
        self,
        features: Sequence[Tensor],
        batch_data_samples: SampleList,
        *,
        training: bool,
    ) -> tuple[tuple[list[Tensor], list[Tensor]], list[Tensor]]:
        """RPN outputs and the (controlled) per-image proposals, still attached to the RPN's deltas."""
        cls_scores, bbox_preds = self.rpn_head(features)
        image_sizes = _image_sizes(batch_data_samples)
        settings = self.train_proposals if training else self.test_proposals
        proposals = rpn_proposals(
            self.rpn_head,
            cls_scores,
            bbox_preds,
            image_sizes,
            **settings,
            delta_grad_clip=self.cascade.box_grad_bound(len(batch_data_samples), self.loss_scale),
        )
        has_gt = all("gt_instances" in s and "bboxes" in s.gt_instances for s in batch_data_samples)
        gt_boxes = [_gt_boxes(s, training=training) for s in batch_data_samples] if has_gt else None
        try:
            proposals = self.proposal_control(
                proposals, image_sizes=image_sizes, gt_boxes=gt_boxes, training=training
            )
        except ParameterError as error:
            raise _config_error(error) from None
        return (cls_scores, bbox_preds), proposals

    def proposals(self, features: Sequence[Tensor], batch_data_samples: SampleList) -> list[Tensor]:
        """What stage 2 receives at test time, per image: boxes [R, 4] (x1, y1, x2, y2) in network-input
        pixels, best first, after the proposal controls (cap, jitter, oracle, random; the oracle needs the
        samples' `gt_instances`). `features` are `extract_feat`'s [B, C, H_l, W_l] per level. For scoring
        stage 1 (proposal recall); MNC's proposals carry no score of their own."""
        _, proposals = self._proposals(features, batch_data_samples, training=False)
        return proposals

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList,
             extra_proposals: Sequence[Tensor] | None = None) -> dict[str, Tensor | list[Tensor]]:
        """Weighted losses: loss_rpn_cls, loss_rpn_bbox (per FPN level) and the cascade's
        loss_{mask,cls,seg_cls,box}_s<stage>. ``extra_proposals``: per image [E, 4] boxes (network-input
        pixels) that join the RPN's proposals before stage 2 samples its RoIs (Video MNC's propagated
        instances)."""
        features = self.extract_feat(batch_inputs)
        (cls_scores, bbox_preds), proposals = self._proposals(features, batch_data_samples, training=True)
        if extra_proposals is not None:
            proposals = [torch.cat((p, e.to(p).detach())) for p, e in zip(proposals, extra_proposals)]

        metas = [s.metainfo for s in batch_data_samples]
        # The RPN is class-agnostic: its targets are the boxes with label 0 (as mmdet's two-stage detectors).
        rpn_targets = [
            InstanceData(bboxes=s.gt_instances.bboxes, labels=torch.zeros_like(s.gt_instances.labels))
            for s in batch_data_samples
        ]
        ignored = [s.ignored_instances if "ignored_instances" in s else None for s in batch_data_samples]
        rpn_losses = self.rpn_head.loss_by_feat(cls_scores, bbox_preds, rpn_targets, metas, ignored)
        losses: dict[str, Tensor | list[Tensor]] = {
            name: [self.rpn_loss_weights[name] * term for term in terms] for name, terms in rpn_losses.items()
        }
        targets = [self._targets(s, batch_inputs.device) for s in batch_data_samples]
        losses.update(self.cascade.loss(features, proposals, targets, _image_sizes(batch_data_samples),
                                        loss_scale=self.loss_scale))
        return losses

    @staticmethod
    def _targets(data_sample, device: torch.device) -> InstanceTargets:
        """mmdet GT (0-based labels, Bitmap/PolygonMasks) -> InstanceTargets (1-based, mask tensor)."""
        gt = data_sample.gt_instances
        boxes = get_box_tensor(gt.bboxes).to(device=device, dtype=torch.float32)
        if "masks" not in gt:
            raise ConfigError(
                "train_dataloader.dataset.pipeline: MNC needs instance masks: add "
                "LoadAnnotations(with_mask=True)"
            )
        masks = gt.masks.to_tensor(dtype=torch.uint8, device=device)
        if masks.shape[0] == 0:
            height, width = data_sample.metainfo.get("pad_shape", data_sample.metainfo["img_shape"])[:2]
            masks = masks.new_zeros(0, height, width)
        return InstanceTargets(boxes=boxes, labels=gt.labels.to(device) + 1, masks=masks)

    def predict(
        self, batch_inputs: Tensor, batch_data_samples: SampleList, rescale: bool = True
    ) -> SampleList:
        """Adds `pred_instances` (bboxes [N, 4], scores [N], labels [N] 0-based, masks [N, H, W] bool) to each
        data sample, at the original image size when `rescale` (using metainfo's scale_factor), else at the
        network input's."""
        features = self.extract_feat(batch_inputs)
        proposals = self.proposals(features, batch_data_samples)
        outputs = self.cascade.predict(features, proposals, _image_sizes(batch_data_samples))
        for data_sample, output in zip(batch_data_samples, outputs):
            meta = data_sample.metainfo
            if rescale:
                image_size, scale = tuple(meta["ori_shape"][:2]), tuple(meta["scale_factor"])
            else:
                image_size, scale = tuple(meta["img_shape"][:2]), (1.0, 1.0)
            detections = self.postprocessor(output, image_size=image_size, scale=scale)
            data_sample.pred_instances = detection_instances(detections)
        return batch_data_samples

    def _forward(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> tuple:
        """Raw outputs: RPN objectness logits and deltas per level, and the cascade's per-image instances."""
        features = self.extract_feat(batch_inputs)
        (cls_scores, bbox_preds), proposals = self._proposals(features, batch_data_samples, training=False)
        outputs = self.cascade.predict(features, proposals, _image_sizes(batch_data_samples))
        return cls_scores, bbox_preds, outputs
