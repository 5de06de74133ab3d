"""Everything our configs name, registered in mmdet's registries in one call.

Configs therefore need no ``custom_imports``: :func:`mnc_bench.config_loading.load_config` calls
:func:`register_all` before reading any config.
"""

from __future__ import annotations

METRIC_NAME = "MNCBenchMetric"
CORRUPT_TRANSFORM = "CorruptImage"


def register_all() -> None:
    """Register mmdet's modules, PANet's (``baselines/``, installed as ``mnc_bench.baselines``), MNC's adapter
    (model type ``MNC``), the RoI layer ``SeparableRoIAlign``, the evaluation metric ``MNCBenchMetric`` and
    the test-time transform ``CorruptImage`` (idempotent)."""
    import warnings

    import mmcv.ops
    from mmdet.registry import METRICS, TRANSFORMS
    from mmdet.utils import register_all_modules

    with warnings.catch_warnings():
        # mmdet's transforms import imagecorruptions, which imports setuptools' deprecated pkg_resources.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        register_all_modules(init_default_scope=False)
    import mnc_bench.baselines  # noqa: F401  (registers on import)
    import mnc_bench.models.mmdet_adapter  # noqa: F401  (registers on import)
    from mnc_bench.data.corruption_transform import CorruptImage
    from mnc_bench.evaluation.metric import MNCBenchMetric
    from mnc_bench.models.roi_align import SeparableRoIAlign

    # mmdet's RoI extractors resolve `roi_layer.type` as an attribute of mmcv.ops, not through a registry
    # (BaseRoIExtractor.build_roi_layers), so that is where a RoI layer joins.
    mmcv.ops.SeparableRoIAlign = SeparableRoIAlign

    # force=True: a second call (or a reload of the metric module) must not fail on the existing name.
    METRICS.register_module(name=METRIC_NAME, module=MNCBenchMetric, force=True)
    TRANSFORMS.register_module(name=CORRUPT_TRANSFORM, module=CorruptImage, force=True)
