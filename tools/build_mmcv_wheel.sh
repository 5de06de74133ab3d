#!/usr/bin/env bash
# Build (once) and install mmcv 2.1.0 with its C++ ops for the venv's torch, caching the wheel outside the clone.
# Usage: tools/build_mmcv_wheel.sh VENV_PYTHON [WHEEL_CACHE_DIR]
set -euo pipefail

PY=${1:?usage: build_mmcv_wheel.sh VENV_PYTHON [WHEEL_CACHE_DIR]}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, without resolving the venv's symlink
CACHE=${2:-${MNC_BENCH_WHEEL_CACHE:-$HOME/.cache/mnc-bench/wheels}}
MMCV_VERSION=2.1.0  # mmdet 3.3.0 refuses mmcv >= 2.2.0.

# Key the cache on everything the compiled ops depend on: mmcv, torch and the Python ABI.
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
PY_TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
KEY_DIR="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PY_TAG"

if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  echo "mmcv $MMCV_VERSION with ops already installed"
  exit 0
fi

if ! ls "$KEY_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  echo "Building mmcv $MMCV_VERSION with ops for torch $TORCH_VERSION ($PY_TAG); this takes ~15 min on 2 cores, once."
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  # No prebuilt mmcv 2.1.0 wheel exists for this torch: build the sdist.
  "$PY" -m pip download --quiet --no-deps --no-binary :all: --dest "$WORK" "mmcv==$MMCV_VERSION"
  tar -xzf "$WORK"/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK"
  SRC="$WORK/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers require C++20, but mmcv 2.1.0's setup.py hard-codes -std=c++17.
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { echo "error: C++ standard flag not found in mmcv setup.py" >&2; exit 1; }
  # setup.py imports pkg_resources (setuptools < 81) and torch, so build without isolation in the venv.
  # MMCV_WITH_OPS=1 compiles RoIAlign/NMS etc., which mmdet needs; FORCE_CUDA=0 keeps the build CPU-only.
  mkdir -p "$WORK/dist"
  (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
      "$PY" -m pip wheel --no-build-isolation --no-deps --wheel-dir "$WORK/dist" .)
  mkdir -p "$KEY_DIR"
  # Publish atomically so an interrupted build never leaves a half-written wheel in the cache.
  for whl in "$WORK"/dist/mmcv-*.whl; do
    cp "$whl" "$KEY_DIR/.$(basename "$whl").tmp"
    mv "$KEY_DIR/.$(basename "$whl").tmp" "$KEY_DIR/$(basename "$whl")"
  done
fi

"$PY" -m pip install --quiet "$KEY_DIR"/mmcv-*.whl
"$PY" -c "from mmcv.ops import RoIAlign, nms; print('mmcv ops OK')"
