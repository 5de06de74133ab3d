"""Evaluation: COCO AP/AR (pycocotools or faster-coco-eval), VOC/SBD region AP under the SDS and MNC
protocols, and proposal recall. ``evaluate`` gives every number under stable flat keys.

The mmengine metric lives in :mod:`mnc_bench.evaluation.metric` (not imported here: it pulls in mmengine).
"""

from mnc_bench.evaluation.coco import evaluate_coco
from mnc_bench.evaluation.evaluate import evaluate, format_results, results_to_json
from mnc_bench.evaluation.ground_truth import GroundTruth, load_ground_truth
from mnc_bench.evaluation.proposals import evaluate_proposals
from mnc_bench.evaluation.results_io import Predictions, load_predictions
from mnc_bench.evaluation.voc import evaluate_voc

__all__ = [
    "GroundTruth",
    "Predictions",
    "evaluate",
    "evaluate_coco",
    "evaluate_proposals",
    "evaluate_voc",
    "format_results",
    "load_ground_truth",
    "load_predictions",
    "results_to_json",
]
