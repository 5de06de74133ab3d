"""mnc-bench: a benchmark and ablation harness for instance segmentation (MNC, Mask R-CNN, PANet)."""

__version__ = "0.1.0"
