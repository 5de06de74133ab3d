"""Models. `mnc_bench.models.mnc` is the plain-PyTorch MNC; `mnc_bench.models.mmdet_adapter` registers it
with mmdet.

Nothing is imported here so that the plain-PyTorch core stays importable without mmcv/mmdet.
"""
