"""Package layout only; metadata lives in pyproject.toml.

baselines/ installs as ``mnc_bench.baselines`` so that no generic top-level name ("baselines") lands in
site-packages, while the repository keeps the user's layout.
"""
from setuptools import find_packages, setup

baseline_packages = [
    "mnc_bench.baselines" + p[len("baselines"):] for p in find_packages(include=["baselines*"])
]
setup(
    packages=find_packages(include=["mnc_bench*"]) + baseline_packages,
    package_dir={"mnc_bench.baselines": "baselines"},
    package_data={"mnc_bench": ["py.typed"], "mnc_bench.reporting": ["published_results.csv"]},
)
