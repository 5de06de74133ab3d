#!/usr/bin/env bash
# Build (once) and install mmcv 2.1.0 with its compiled ops for the venv's torch, caching the wheel outside
# the clone. Usage: tools/build_mmcv_wheel.sh VENV_PYTHON [WHEEL_CACHE_DIR]
#
# Which build (tools/mmcv_build_target.py decides, from mmcv's setup.py rules):
#   - CUDA kernels when torch has CUDA and a GPU is visible or TORCH_CUDA_ARCH_LIST is set (e.g. '8.0;9.0'
#     on a login node without GPUs); built for that list, else for the visible GPUs; needs nvcc (CUDA_HOME);
#   - CPU ops only with MNC_BENCH_CPU_ONLY=1, with a CPU-only torch, or with no GPU and no arch list.
# MAX_JOBS compilers run at once (default: the cores, at most one per 4 GB of available memory: nvcc jobs are
# large). The cache key names mmcv, torch (with its CUDA), the Python ABI, the target and the architectures,
# so a CPU wheel built on a login node is never reused on GPU nodes.
set -euo pipefail

PY=${1:?usage: build_mmcv_wheel.sh VENV_PYTHON [WHEEL_CACHE_DIR]}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, without resolving the venv's symlink
CACHE=${2:-${MNC_BENCH_WHEEL_CACHE:-$HOME/.cache/mnc-bench/wheels}}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MMCV_VERSION=2.1.0  # mmdet 3.3.0 refuses mmcv >= 2.2.0; also in mmcv_build_target.py

# TARGET (cuda | cpu), ARCHS, KEY, NOTE, STAMP (the venv's record of the installed build's key)
eval "$("$PY" "$HERE/mmcv_build_target.py" target 2>/dev/null)"
[ -n "${TARGET:-}" ] || { echo "error: $PY cannot import torch (install torch before mmcv)" >&2; exit 1; }
KEY_DIR="$CACHE/$KEY"
[ -n "$NOTE" ] && echo "note: $NOTE" >&2

if "$PY" "$HERE/mmcv_build_target.py" accepts "$KEY" "$TARGET" 2>/dev/null; then
  WHAT=$([ "$TARGET" = cuda ] && echo "CUDA kernels ($ARCHS)" || echo ops)
  echo "mmcv $MMCV_VERSION with $WHAT already installed"
  exit 0
fi

if ! ls "$KEY_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  BUILD_ENV=(MMCV_WITH_OPS=1)
  if [ "$TARGET" = cuda ]; then
    if ! CUDA_HOME_FOUND=$("$PY" "$HERE/mmcv_build_target.py" toolkit 2>/dev/null); then
      echo "$CUDA_HOME_FOUND" >&2  # the one error line
      exit 1
    fi
    # FORCE_CUDA=1: kernels also without a visible GPU (setup.py); the arch list goes to torch's
    # cpp_extension.
    BUILD_ENV+=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$ARCHS" "CUDA_HOME=$CUDA_HOME_FOUND")
  else
    # setup.py builds CUDA kernels whenever it sees a GPU, whatever FORCE_CUDA says: hide the GPUs from it.
    BUILD_ENV+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
  fi
  if [ -z "${MAX_JOBS:-}" ]; then
    CORES=$(nproc)
    MEM_JOBS=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / (4 * 1024 * 1024) ))
    MAX_JOBS=$(( CORES < MEM_JOBS ? CORES : MEM_JOBS ))
    MAX_JOBS=$(( MAX_JOBS < 1 ? 1 : MAX_JOBS ))
  fi
  echo "Building mmcv $MMCV_VERSION ($KEY) with $MAX_JOBS jobs, once: ~15 min on 2 cores for the CPU ops;" \
       "the CUDA kernels take longer (see docs/gpu.md)."
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  # No prebuilt mmcv 2.1.0 wheel exists for this torch: build the sdist.
  "$PY" -m pip download --quiet --no-deps --no-binary :all: --dest "$WORK" "mmcv==$MMCV_VERSION"
  tar -xzf "$WORK"/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK"
  SRC="$WORK/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers require C++20, but mmcv 2.1.0's setup.py hard-codes -std=c++17 (for g++ and nvcc).
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { echo "error: C++ standard flag not found in mmcv setup.py" >&2; exit 1; }
  # setup.py imports pkg_resources (setuptools < 81) and torch, so build without isolation in the venv.
  mkdir -p "$WORK/dist"
  (cd "$SRC" && env "${BUILD_ENV[@]}" MAX_JOBS="$MAX_JOBS" \
      "$PY" -m pip wheel --no-build-isolation --no-deps --wheel-dir "$WORK/dist" .)
  mkdir -p "$KEY_DIR"
  # Publish atomically so an interrupted build never leaves a half-written wheel in the cache.
  for whl in "$WORK"/dist/mmcv-*.whl; do
    cp "$whl" "$KEY_DIR/.$(basename "$whl").tmp"
    mv "$KEY_DIR/.$(basename "$whl").tmp" "$KEY_DIR/$(basename "$whl")"
  done
fi

# The wheel replaces any other mmcv 2.1.0 build (pip would keep an installed one of the same version), then
# pip adds mmcv's missing dependencies.
"$PY" -m pip install --quiet --force-reinstall --no-deps "$KEY_DIR"/mmcv-*.whl
"$PY" -m pip install --quiet "$KEY_DIR"/mmcv-*.whl
if [ "$TARGET" = cuda ]; then
  # Kernels compiled in, and (with a GPU here) running on it.
  "$PY" -c "import torch; from mmcv.ops import get_compiling_cuda_version as v, nms
assert v() != 'not available', 'mmcv was built without CUDA kernels'
if torch.cuda.is_available(): nms(torch.rand(4, 4).cuda().sort(1).values, torch.rand(4).cuda(), 0.5)
print(f'mmcv ops OK, CUDA {v()} kernels for $ARCHS')"
else
  "$PY" -c "from mmcv.ops import RoIAlign, nms; print('mmcv ops OK (CPU)')"
fi
echo "$KEY" > "$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
