"""Baselines registered for mmdet (installed as ``mnc_bench.baselines``): the full PANet.

Importing this package registers, in mmdet's MODELS registry, ``PANet``, ``AdaptiveRoIExtractor``,
``AFPBBoxHead`` and ``FusedFCNMaskHead`` (:func:`mnc_bench.registration.register_all` imports it). Imports inside
the package are relative: setup.py maps this folder to the name ``mnc_bench.baselines`` (editable install).
"""

from .panet import AdaptiveRoIExtractor, AFPBBoxHead, FusedFCNMaskHead, PANet

__all__ = ["AdaptiveRoIExtractor", "AFPBBoxHead", "FusedFCNMaskHead", "PANet"]
