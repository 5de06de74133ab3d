"""Baselines built on mmdetection (installed as mnc_bench.baselines)."""
