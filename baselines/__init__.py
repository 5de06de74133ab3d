"""Baselines registered for mmdet (installed as ``mnc_bench.baselines``): the full PANet, and SOLOv2
with boxes.

Importing this package registers, in mmdet's MODELS registry, ``PANet``, ``AdaptiveRoIExtractor``,
``AFPBBoxHead``, ``FusedFCNMaskHead`` and ``SOLOv2MaskBoxes`` (:func:`mnc_bench.registration.register_all`
imports it). Imports inside the package are relative: setup.py maps this folder to the name
``mnc_bench.baselines`` (editable install).
"""

from .panet import AdaptiveRoIExtractor, AFPBBoxHead, FusedFCNMaskHead, PANet
from .solov2 import SOLOv2MaskBoxes

__all__ = ["AdaptiveRoIExtractor", "AFPBBoxHead", "FusedFCNMaskHead", "PANet", "SOLOv2MaskBoxes"]
