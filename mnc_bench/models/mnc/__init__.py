"""Multi-task Network Cascades (Dai, He, Sun, CVPR 2016) in plain PyTorch: no registries, no mmdet."""

from mnc_bench.models.mnc.boxes import BoxCoder, clip_boxes
from mnc_bench.models.mnc.cascade import CascadeOutput, MNCCascade
from mnc_bench.models.mnc.class_stage import ClassStage, ClassStageOutput
from mnc_bench.models.mnc.config import MNCConfig, ParameterError, RoISampling, StageLossWeights
from mnc_bench.models.mnc.mask_stage import MaskStage
from mnc_bench.models.mnc.postprocess import Detections, MNCPostProcessor, paste_masks
from mnc_bench.models.mnc.proposals import ProposalControl
from mnc_bench.models.mnc.roi_warp import RoIWarp, warp_rois
from mnc_bench.models.mnc.targets import InstanceTargets

__all__ = [
    "BoxCoder",
    "CascadeOutput",
    "ClassStage",
    "ClassStageOutput",
    "Detections",
    "InstanceTargets",
    "MNCCascade",
    "MNCConfig",
    "MNCPostProcessor",
    "MaskStage",
    "ParameterError",
    "ProposalControl",
    "RoISampling",
    "RoIWarp",
    "StageLossWeights",
    "clip_boxes",
    "paste_masks",
    "warp_rois",
]
