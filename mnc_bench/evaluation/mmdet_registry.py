"""Register :class:`MNCBenchMetric` in mmdet's METRICS registry (importing this module does it).

Kept apart so that ``mnc_bench.evaluation`` never imports mmdet (which needs a built mmcv). In a config:
``custom_imports = dict(imports=["mnc_bench.evaluation.mmdet_registry"], allow_failed_imports=False)`` and
``val_evaluator = dict(type="MNCBenchMetric", ann_file=...)``.
"""

from mmdet.registry import METRICS

from mnc_bench.evaluation.metric import MNCBenchMetric

METRIC_NAME = "MNCBenchMetric"

# force=True: re-importing (importlib.reload, a second config load) must not fail on the existing name.
METRICS.register_module(name=METRIC_NAME, module=MNCBenchMetric, force=True)
