"""The one place MNC meets mmdet: an mmdet detector `MNC` wrapping the plain-PyTorch cascade.

Backbone, neck and RPN head are built through mmdet's registry from the same config dicts as the Mask R-CNN
baseline, so a comparison differs only in what follows stage 1. Everything after the RPN is
`mnc_bench.models.mnc`, built here from the config (this module is its only `from_config`).

Config of `type="MNC"` (all numbers are the paper's / MNC-code's defaults unless noted)::

    model = dict(
        type="MNC",
        data_preprocessor=...,  backbone=...,  neck=... (optional),  rpn_head=dict(type="RPNHead", ...),
        cascade=dict(
            num_classes=80, num_stages=5, share_weights=True, box_grad=True,
            box_grad_clip=1 / 512,            # per-image bound on the gradient into RPN / stage-3 box deltas
            featmap_strides=[4, 8, 16, 32],   # [16] for the single-level C4 variant
            in_channels=None,                 # default: neck.out_channels; required without a neck
            finest_scale=56, warp_size=28, mask_size=28, mask_hidden_dim=256,
            cls_pooled_size=7, cls_fc_dim=4096, cls_num_fcs=2, box_target_stds=(0.1, 0.1, 0.2, 0.2)),
        loss_weights=dict(rpn_cls=1.0, rpn_box=1.0, mask=1.0, cls=1.0, box=1.0),  # mask/cls/box: scalar or
                                                                                  # one value per round
        proposal_control=None,  # or dict(mode="rpn"|"oracle"|"random", max_proposals, jitter, oracle_iou,
                                #         oracle_per_gt, num_random, min_random_size, apply_at, seed)
        train_cfg=dict(
            rpn=dict(assigner=..., sampler=..., allowed_border=-1, pos_weight=-1, debug=False),  # mmdet's
            rpn_proposal=dict(nms_pre=1000, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7),
                              min_bbox_size=0),
            rcnn=dict(num_rois=64, fg_fraction=0.25, fg_iou=0.5, bg_iou_low=0.0)),
        test_cfg=dict(
            rpn=dict(nms_pre=1000, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.05, nms_iou=0.3, max_per_img=100, mask_thr=0.4, mask_voting=True,
                      voting_iou=0.5, voting_resolution=56)))

Invalid values raise ValueError naming the field (e.g. "model.cascade.num_stages: ...").
"""

from __future__ import annotations

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

from mnc_bench.models.mnc import (
    BoxCoder,
    ClassStage,
    InstanceTargets,
    MaskStage,
    MNCCascade,
    MNCPostProcessor,
    ProposalControl,
    RoISampling,
    RoIWarp,
    StageLossWeights,
)
from mnc_bench.models.rpn_proposals import rpn_proposals

_CASCADE_DEFAULTS: dict[str, Any] = dict(
    num_classes=None,
    num_stages=5,
    share_weights=True,
    box_grad=True,
    box_grad_clip=1 / 512,
    featmap_strides=(4, 8, 16, 32),
    in_channels=None,
    finest_scale=56.0,
    warp_size=28,
    mask_size=28,
    mask_hidden_dim=256,
    cls_pooled_size=7,
    cls_fc_dim=4096,
    cls_num_fcs=2,
    box_target_stds=(0.1, 0.1, 0.2, 0.2),
)
_LOSS_WEIGHT_DEFAULTS: dict[str, Any] = dict(rpn_cls=1.0, rpn_box=1.0, mask=1.0, cls=1.0, box=1.0)
_RPN_PROPOSAL_DEFAULTS: dict[str, Any] = dict(
    nms_pre=1000, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
)
_RCNN_TRAIN_DEFAULTS: dict[str, Any] = dict(num_rois=64, fg_fraction=0.25, fg_iou=0.5, bg_iou_low=0.0)
_RCNN_TEST_DEFAULTS: dict[str, Any] = dict(
    score_thr=0.05, nms_iou=0.3, max_per_img=100, mask_thr=0.4, mask_voting=True, voting_iou=0.5,
    voting_resolution=56,
)


def _with_defaults(config: Mapping | None, defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`defaults` updated by `config`; unknown keys are a ValueError naming them."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(defaults)}")
    return {**defaults, **config}


def _check_registered(config: Mapping | None, where: str) -> None:
    if config is None:
        return
    if not isinstance(config, Mapping) or "type" not in config:
        raise ValueError(f"{where}: must be a dict with a 'type'")
    if isinstance(config["type"], str) and MODELS.get(config["type"]) is None:
        raise ValueError(f"{where}.type: unknown type {config['type']!r} (not in mmdet's MODELS registry)")


def _per_round(value: float | Sequence[float], num_rounds: int, where: str) -> list[float]:
    values = [value] * num_rounds if isinstance(value, (int, float)) else list(value)
    if len(values) != num_rounds:
        raise ValueError(
            f"{where}: need a number or {num_rounds} numbers (one per mask/class round), got {value}"
        )
    return [float(v) for v in values]


def build_cascade(
    cascade: Mapping, loss_weights: Mapping, rcnn_train: Mapping | None, *, neck_channels: int | None
) -> MNCCascade:
    """Translate `model.cascade`, `model.loss_weights` and `train_cfg.rcnn` into an `MNCCascade`."""
    cfg = _with_defaults(cascade, _CASCADE_DEFAULTS, "model.cascade")
    weights = _with_defaults(loss_weights, _LOSS_WEIGHT_DEFAULTS, "model.loss_weights")
    sampling_cfg = _with_defaults(rcnn_train, _RCNN_TRAIN_DEFAULTS, "model.train_cfg.rcnn")
    if cfg["num_classes"] is None:
        raise ValueError("model.cascade.num_classes: required")
    in_channels = cfg["in_channels"] if cfg["in_channels"] is not None else neck_channels
    if in_channels is None:
        raise ValueError("model.cascade.in_channels: required when the model has no neck")
    if neck_channels is not None and in_channels != neck_channels:
        raise ValueError(f"model.cascade.in_channels: {in_channels} != neck.out_channels {neck_channels}")
    num_stages = cfg["num_stages"]
    if not isinstance(num_stages, int) or num_stages < 3 or num_stages % 2 == 0:
        raise ValueError(f"model.cascade.num_stages: must be an odd integer >= 3, got {num_stages!r}")
    num_rounds = (num_stages - 1) // 2
    try:
        round_weights = [
            StageLossWeights(mask=mask, cls=cls, box=box)
            for mask, cls, box in zip(
                _per_round(weights["mask"], num_rounds, "mask"),
                _per_round(weights["cls"], num_rounds, "cls"),
                _per_round(weights["box"], num_rounds, "box"),
            )
        ]
    except ValueError as error:
        raise ValueError(f"model.loss_weights.{str(error).removeprefix('loss_weights.')}") from None
    try:
        sampling = RoISampling(**sampling_cfg)
    except ValueError as error:
        raise ValueError(f"model.train_cfg.rcnn.{error}") from None
    try:
        return MNCCascade(
            roi_warp=RoIWarp(
                featmap_strides=cfg["featmap_strides"],
                output_size=cfg["warp_size"],
                finest_scale=cfg["finest_scale"],
            ),
            mask_stage=MaskStage(
                in_channels=in_channels,
                warp_size=cfg["warp_size"],
                mask_size=cfg["mask_size"],
                hidden_dim=cfg["mask_hidden_dim"],
            ),
            class_stage=ClassStage(
                in_channels=in_channels,
                num_classes=cfg["num_classes"],
                pooled_size=cfg["cls_pooled_size"],
                fc_dim=cfg["cls_fc_dim"],
                num_fcs=cfg["cls_num_fcs"],
            ),
            num_stages=num_stages,
            share_weights=bool(cfg["share_weights"]),
            box_grad=bool(cfg["box_grad"]),
            box_grad_clip=cfg["box_grad_clip"],
            loss_weights=round_weights,
            sampling=sampling,
            box_coder=BoxCoder(stds=cfg["box_target_stds"]),
        )
    except ValueError as error:
        raise ValueError(f"model.cascade.{error}") from None


def _proposal_settings(config: Mapping | None, where: str) -> dict[str, Any]:
    """mmdet's RPN proposal config (nms_pre, max_per_img, nms, min_bbox_size) as `rpn_proposals` kwargs."""
    cfg = _with_defaults(config, _RPN_PROPOSAL_DEFAULTS, where)
    nms = dict(cfg["nms"])
    if nms.get("type", "nms") != "nms" or "iou_threshold" not in nms:
        raise ValueError(f"{where}.nms: only dict(type='nms', iou_threshold=...) is supported, got {nms}")
    if not 0.0 < nms["iou_threshold"] <= 1.0:
        raise ValueError(f"{where}.nms.iou_threshold: must be in (0, 1], got {nms['iou_threshold']}")
    if cfg["max_per_img"] < 1:
        raise ValueError(f"{where}.max_per_img: must be >= 1, got {cfg['max_per_img']}")
    return dict(
        nms_pre=int(cfg["nms_pre"]),
        max_per_img=int(cfg["max_per_img"]),
        nms_iou=float(nms["iou_threshold"]),
        min_bbox_size=float(cfg["min_bbox_size"]),
    )


def _build_postprocessor(config: Mapping | None) -> MNCPostProcessor:
    cfg = _with_defaults(config, _RCNN_TEST_DEFAULTS, "model.test_cfg.rcnn")
    try:
        return MNCPostProcessor(**cfg)
    except ValueError as error:
        raise ValueError(f"model.test_cfg.rcnn.{error}") from None


def _build_proposal_control(config: Mapping | None) -> ProposalControl:
    try:
        return ProposalControl(**dict(config or {}), rank=get_rank())
    except TypeError as error:
        raise ValueError(f"model.proposal_control: {error}") from None
    except ValueError as error:
        raise ValueError(f"model.{error}") from None


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
        weights = _with_defaults(loss_weights, _LOSS_WEIGHT_DEFAULTS, "model.loss_weights")
        for name in ("rpn_cls", "rpn_box"):
            if weights[name] < 0:
                raise ValueError(f"model.loss_weights.{name}: must be >= 0, got {weights[name]}")
        self.rpn_loss_weights = dict(
            loss_rpn_cls=float(weights["rpn_cls"]), loss_rpn_bbox=float(weights["rpn_box"])
        )

        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        rpn_head = dict(rpn_head)
        if rpn_head.get("num_classes", 1) != 1:
            raise ValueError(f"model.rpn_head.num_classes: must be 1, got {rpn_head['num_classes']}")
        rpn_head.update(num_classes=1, train_cfg=train_cfg.get("rpn"), test_cfg=test_cfg.get("rpn"))
        self.rpn_head = MODELS.build(rpn_head)

        self.cascade = build_cascade(
            cascade, weights, train_cfg.get("rcnn"), neck_channels=neck.get("out_channels") if neck else None
        )
        self.train_proposals = _proposal_settings(
            train_cfg.get("rpn_proposal"), "model.train_cfg.rpn_proposal"
        )
        self.test_proposals = _proposal_settings(test_cfg.get("rpn"), "model.test_cfg.rpn")
        self.postprocessor = _build_postprocessor(test_cfg.get("rcnn"))
        self.proposal_control = _build_proposal_control(proposal_control)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

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
        image_sizes = [tuple(s.metainfo["img_shape"][:2]) for s in batch_data_samples]
        settings = self.train_proposals if training else self.test_proposals
        proposals = rpn_proposals(
            self.rpn_head,
            cls_scores,
            bbox_preds,
            image_sizes,
            **settings,
            delta_grad_clip=self.cascade.box_grad_bound(len(batch_data_samples)),
        )
        has_gt = all("gt_instances" in s and "bboxes" in s.gt_instances for s in batch_data_samples)
        gt_boxes = [get_box_tensor(s.gt_instances.bboxes) for s in batch_data_samples] if has_gt else None
        proposals = self.proposal_control(
            proposals, image_sizes=image_sizes, gt_boxes=gt_boxes, training=training
        )
        return (cls_scores, bbox_preds), proposals

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict[str, Tensor | list[Tensor]]:
        """Weighted losses: loss_rpn_cls, loss_rpn_bbox (per FPN level) and loss_{mask,cls,box}_s<stage>."""
        features = self.extract_feat(batch_inputs)
        (cls_scores, bbox_preds), proposals = self._proposals(features, batch_data_samples, training=True)

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
        image_sizes = [tuple(meta["img_shape"][:2]) for meta in metas]
        targets = [self._targets(s, batch_inputs.device) for s in batch_data_samples]
        losses.update(self.cascade.loss(features, proposals, targets, image_sizes))
        return losses

    @staticmethod
    def _targets(data_sample, device: torch.device) -> InstanceTargets:
        """mmdet GT (0-based labels, Bitmap/PolygonMasks) -> InstanceTargets (1-based, mask tensor)."""
        gt = data_sample.gt_instances
        boxes = get_box_tensor(gt.bboxes).to(device=device, dtype=torch.float32)
        if "masks" not in gt:
            raise ValueError(
                "MNC needs instance masks: add LoadAnnotations(with_mask=True) to the train pipeline"
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
        data sample, at the original image size when `rescale` (using metainfo's scale_factor)."""
        features = self.extract_feat(batch_inputs)
        _, proposals = self._proposals(features, batch_data_samples, training=False)
        image_sizes = [tuple(s.metainfo["img_shape"][:2]) for s in batch_data_samples]
        outputs = self.cascade.predict(features, proposals, image_sizes)
        for data_sample, output in zip(batch_data_samples, outputs):
            meta = data_sample.metainfo
            if rescale:
                image_size, scale = tuple(meta["ori_shape"][:2]), tuple(meta["scale_factor"])
            else:
                image_size, scale = tuple(meta["img_shape"][:2]), (1.0, 1.0)
            detections = self.postprocessor(output, image_size=image_size, scale=scale)
            data_sample.pred_instances = InstanceData(
                bboxes=detections.boxes,
                scores=detections.scores,
                labels=detections.labels,
                masks=detections.masks,
            )
        return batch_data_samples

    def _forward(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> tuple:
        """Raw outputs: RPN objectness logits and deltas per level, and the cascade's per-image instances."""
        features = self.extract_feat(batch_inputs)
        (cls_scores, bbox_preds), proposals = self._proposals(features, batch_data_samples, training=False)
        image_sizes = [tuple(s.metainfo["img_shape"][:2]) for s in batch_data_samples]
        return cls_scores, bbox_preds, self.cascade.predict(features, proposals, image_sizes)
