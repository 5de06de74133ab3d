"""Everything our configs name, registered in mmdet's registries in one call.

Configs therefore need no ``custom_imports``: :func:`mnc_bench.config_loading.load_config` calls
:func:`register_all` before reading any config.
"""

from __future__ import annotations

METRIC_NAME = "MNCBenchMetric"
VIDEO_METRIC_NAME = "MNCBenchVideoMetric"
CORRUPT_TRANSFORM = "CorruptImage"


def register_all() -> None:
    """Register mmdet's modules, PANet's (``baselines/``, installed as ``mnc_bench.baselines``), MNC's adapter
    (model type ``MNC``), the video models (``FrameLinkVIS``, ``VideoMNC``), the RoI layer
    ``SeparableRoIAlign``, the evaluation metrics ``MNCBenchMetric`` and ``MNCBenchVideoMetric``, the
    soft-mask writer, the test-time transform ``CorruptImage`` and the hook ``LossScaleHook`` of mixed
    precision (idempotent)."""
    import warnings

    import mmcv.ops
    from mmdet.registry import METRICS, TRANSFORMS
    from mmdet.utils import register_all_modules

    with warnings.catch_warnings():
        # mmdet's transforms import imagecorruptions, which imports setuptools' deprecated pkg_resources.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        register_all_modules(init_default_scope=False)
    import mnc_bench.amp  # noqa: F401  (registers LossScaleHook on import)
    import mnc_bench.baselines  # noqa: F401  (registers on import)
    import mnc_bench.models.mmdet_adapter  # noqa: F401  (registers on import)
    import mnc_bench.models.video_adapter  # noqa: F401  (registers FrameLinkVIS and VideoMNC on import)
    from mnc_bench.data.corruption_transform import CorruptImage
    from mnc_bench.evaluation.metric import MNCBenchMetric
    from mnc_bench.evaluation.video_metric import MNCBenchVideoMetric
    from mnc_bench.models.roi_align import SeparableRoIAlign
    from mnc_bench.soft_masks import WRITER_NAME, SoftMaskWriter

    # mmdet's RoI extractors resolve `roi_layer.type` as an attribute of mmcv.ops, not through a registry
    # (BaseRoIExtractor.build_roi_layers), so that is where a RoI layer joins.
    mmcv.ops.SeparableRoIAlign = SeparableRoIAlign

    # force=True: a second call (or a reload of the metric module) must not fail on the existing name.
    METRICS.register_module(name=METRIC_NAME, module=MNCBenchMetric, force=True)
    METRICS.register_module(name=VIDEO_METRIC_NAME, module=MNCBenchVideoMetric, force=True)
    METRICS.register_module(name=WRITER_NAME, module=SoftMaskWriter, force=True)
    TRANSFORMS.register_module(name=CORRUPT_TRANSFORM, module=CorruptImage, force=True)
