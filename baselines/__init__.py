"""Baselines registered for mmdet (installed as ``mnc_bench.baselines``): the full PANet.

Importing this package registers, in mmdet's MODELS registry, ``PANet``, ``AdaptiveRoIExtractor``,
``AFPBBoxHead`` and ``FusedFCNMaskHead``. Imports inside the package are relative, so it works under the
installed name ``mnc_bench.baselines`` and when loaded from the source tree (``mnc_bench.training``).
"""

from .panet import AdaptiveRoIExtractor, AFPBBoxHead, FusedFCNMaskHead, PANet

__all__ = ["AdaptiveRoIExtractor", "AFPBBoxHead", "FusedFCNMaskHead", "PANet"]
