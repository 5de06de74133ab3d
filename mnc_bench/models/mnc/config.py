"""MNC's settings in one place: the defaults of every stage-2..N parameter, and the error that names one.

`MNCConfig` is the vocabulary of the core: its field names are the parameter names every validation error of
`mnc_bench.models.mnc` reports (`ParameterError.parameter`), and its defaults are the ones each module falls
back to, so building `MNCCascade` directly trains like a config that leaves a setting out. The mmdet adapter
only maps config keys onto these fields (one table) and back for errors.

Where the paper and MNC-code (daijifeng001/MNC, the released 5-stage VGG-16 model) differ, the default follows
MNC-code when the paper is silent about it and the paper when it states a value; each field says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STAGE3_LABELS: tuple[str, ...] = ("box", "mask", "both")


class ParameterError(ValueError):
    """An invalid MNC setting. `parameter` is the path of an `MNCConfig` setting ("cls_fc_dim",
    "loss_weights.mask", "sampling.num_rois") or a proposal control ("proposal_control.mode"); the message is
    `parameter: reason`."""

    def __init__(self, parameter: str, reason: str):
        super().__init__(parameter, reason)  # both in `args`, so the error pickles
        self.parameter = parameter
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.parameter}: {self.reason}"


def _numbers(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,)


@dataclass(frozen=True)
class StageLossWeights:
    """Loss weights: `mask` for the mask stage, `cls` for each classifier of the classification stage, `box`
    for its box regression. Each is one number for every round or a sequence with one number per round. The
    paper weighs every term 1; MNC-code's prototxt weighs the mask loss 2."""

    mask: float | tuple[float, ...] = 1.0
    cls: float | tuple[float, ...] = 1.0
    box: float | tuple[float, ...] = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
            if any(v < 0 for v in _numbers(value)):
                raise ParameterError(f"loss_weights.{field.name}", f"must be >= 0, got {value}")


@dataclass(frozen=True)
class RoISampling:
    """Per-image RoI sampling of the first mask/classification round.

    A RoI is foreground when its best IoU with a ground-truth box is >= `fg_iou` (the paper says "> 0.5";
    MNC-code, like py-faster-rcnn, compares with >=). At most round(num_rois * fg_fraction) foreground RoIs
    are drawn; the rest of the budget goes to background, split over the IoU ranges `bg_iou_ranges` ([low,
    high) each) by `bg_fractions`: range k gets at most round(background budget * fraction k) RoIs and a range
    short of candidates is not refilled from another (MNC-code's `_sample_rois`), so a batch may hold fewer
    than `num_rois`. The defaults, 64 RoIs at 25 % foreground with one background range [0, 0.5), are Fast
    R-CNN's recipe (mmdet's RandomSampler); MNC-code (`lib/mnc_config.py`) draws 30 % foreground and its
    background 85 % from [0.1, 0.5) and 15 % from [0, 0.1).
    """

    num_rois: int = 64
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou_ranges: tuple[tuple[float, float], ...] = ((0.0, 0.5),)
    bg_fractions: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.num_rois < 1:
            raise ParameterError("sampling.num_rois", f"must be >= 1, got {self.num_rois}")
        if not 0.0 < self.fg_fraction <= 1.0:
            raise ParameterError("sampling.fg_fraction", f"must be in (0, 1], got {self.fg_fraction}")
        if not 0.0 < self.fg_iou <= 1.0:
            raise ParameterError("sampling.fg_iou", f"must be in (0, 1], got {self.fg_iou}")
        ranges = tuple(tuple(float(v) for v in _numbers(pair)) for pair in _numbers(self.bg_iou_ranges))
        if not ranges or any(len(pair) != 2 or not 0 <= pair[0] < pair[1] <= self.fg_iou for pair in ranges):
            raise ParameterError(
                "sampling.bg_iou_ranges",
                f"need one or more [low, high) with 0 <= low < high <= fg_iou, got {self.bg_iou_ranges}",
            )
        fractions = tuple(float(f) for f in _numbers(self.bg_fractions))
        if len(fractions) != len(ranges) or any(f <= 0 for f in fractions) or sum(fractions) > 1.0 + 1e-6:
            raise ParameterError(
                "sampling.bg_fractions",
                f"need one fraction > 0 per bg_iou_ranges entry, summing to <= 1, got {self.bg_fractions}",
            )
        object.__setattr__(self, "bg_iou_ranges", ranges)
        object.__setattr__(self, "bg_fractions", fractions)


def num_rounds(num_stages: int) -> int:
    """Mask/classification rounds of a cascade of `num_stages` stages (3 -> 1, 5 -> 2, ...)."""
    is_integer = isinstance(num_stages, int) and not isinstance(num_stages, bool)
    if not is_integer or num_stages < 3 or num_stages % 2 == 0:
        raise ParameterError("num_stages", f"must be an odd integer >= 3 (3, 5, 7, ...), got {num_stages!r}")
    return (num_stages - 1) // 2


def per_round(value: Any, rounds: int, parameter: str) -> list[Any]:
    """One value for every round, or a sequence of exactly one value per round."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) != rounds:
            raise ParameterError(
                parameter, f"need one value or one per mask/classification round ({rounds}), got {value}"
            )
        return values
    return [value] * rounds


def round_loss_weights(
    weights: StageLossWeights | Sequence[StageLossWeights], rounds: int
) -> tuple[StageLossWeights, ...]:
    """One StageLossWeights of plain numbers per round, from one whose terms are numbers or per-round
    sequences, or from a sequence of one StageLossWeights per round."""
    if not isinstance(weights, StageLossWeights):
        return tuple(per_round(weights, rounds, "loss_weights"))
    terms = {
        field.name: per_round(getattr(weights, field.name), rounds, f"loss_weights.{field.name}")
        for field in dataclasses.fields(weights)
    }
    return tuple(
        StageLossWeights(**{name: values[index] for name, values in terms.items()}) for index in range(rounds)
    )


@dataclass(frozen=True)
class MNCConfig:
    """Every setting of MNC's stages 2..N (what `MNCCascade.from_config` builds), with its default.

    An error about a setting of `loss_weights` or `sampling` names its path, e.g. "sampling.num_rois".
    """

    num_classes: int | None = None  # required
    in_channels: int | None = None  # required: channels of the feature maps the RoIs are warped from
    # Paper and MNC-code's released model: 5 stages (two mask/classification rounds).
    num_stages: int = 5
    # Stages 4/5 reuse the weights of 2/3 (paper; MNC-code's prototxt names the parameters alike).
    share_weights: bool = True
    # Warping differentiable w.r.t. the boxes: the paper's end-to-end training.
    box_grad: bool = True
    # MNC-code's `clip_base: 512`: element-wise bound on the gradient into RPN / stage-3 deltas, per image.
    box_grad_clip: float | None = 1 / 512
    # Stage 3's classifiers: `box` (box-IoU labels, MNC-code's cls_score), `mask` (mask-IoU labels,
    # seg_cls_score) or `both`; scores and the stage bridge use the mask-level one when present.
    # MNC-code: both (the paper describes one classifier).
    stage3_labels: str = "both"
    # Mask-level labels (MNC-code's MaskLayer): the stage-2 mask binarised at this probability
    # (BINARIZE_THRESH) is a positive when its mask IoU with the RoI's ground truth is >= `seg_label_iou`
    # (TRAIN.FG_SEG_THRESH).
    seg_label_mask_thr: float = 0.4
    seg_label_iou: float = 0.5
    # One stride-16 level as in the paper (VGG-16 conv5_3); FPN configs list theirs.
    featmap_strides: tuple[float, ...] = (16.0,)
    finest_scale: float = 56.0  # FPN level mapping, as mmdet's SingleRoIExtractor
    warp_size: int = 28  # paper: 28 x 28 warped features, max-pooled to 14 x 14 (MNC-code warps 14 x 14)
    mask_size: int = 28  # paper: 28 x 28 masks (MNC-code: 21 x 21)
    mask_hidden_dim: int = 256  # paper and MNC-code
    cls_pooled_size: int = 7  # stage 3 pools box and masked features to 7 x 7 (VGG-16's fc6 input)
    cls_fc_dim: int = 4096  # paper and MNC-code: two 4096-wide fc layers per path (VGG-16's fc6/fc7)
    cls_num_fcs: int = 2
    box_target_stds: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)  # MNC-code's BBOX_NORMALIZE_STDS
    loss_weights: StageLossWeights = StageLossWeights()
    sampling: RoISampling = RoISampling()

    def __post_init__(self) -> None:
        # Config files give lists; the frozen config holds tuples (hashable, and safe as module defaults).
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
                object.__setattr__(self, field.name, value)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))
