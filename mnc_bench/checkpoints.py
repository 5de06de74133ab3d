"""Checkpoint safety: local files only, whole files only, and torch's safe unpickler for mmengine's
checkpoints.

mmengine writes checkpoints in place (not through a temporary file), so a run killed while saving leaves a
truncated last checkpoint; :func:`latest_good_checkpoint` steps back to the newest one that is whole.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from mnc_bench.errors import UserError

# Checkpoints given as URLs or mmengine prefixes would be downloaded: refused.
DOWNLOAD_PREFIXES = ("http://", "https://", "torchvision://", "open-mmlab://", "openmmlab://", "mmcls://",
                     "mmpretrain://", "modelzoo://", "s3://", "pavi://")
# The checkpoints mmengine's CheckpointHook writes into the work dir.
_PERIODIC = re.compile(r"(iter|epoch)_(\d+)\.pth")
LAST_CHECKPOINT = "last_checkpoint"  # mmengine's pointer file in a work dir, naming its newest checkpoint


def checkpoint_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a whole checkpoint (``None`` if it is): torch saves a zip archive, so a truncated
    file has lost the archive's central directory and a damaged one fails a member's CRC. Nothing is
    unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"truncated or not a checkpoint ({exc})"
    return None if damaged is None else f"corrupt (member {damaged} fails its CRC check)"


def require_local_checkpoint(path: str | os.PathLike[str], what: str) -> str:
    """``path`` with '~' expanded, after checking that it is a local, whole checkpoint file; else a
    UserError."""
    text = str(path)
    if text.startswith(DOWNLOAD_PREFIXES):
        raise UserError(f"{what} {text} would be downloaded; give a local checkpoint file")
    local = Path(text).expanduser()
    if not local.is_file():
        raise UserError(f"{what} {text} not found")
    problem = checkpoint_problem(local)
    if problem:
        raise UserError(f"{what} {local} is {problem}")
    return str(local)


def latest_good_checkpoint(work_dir: str | os.PathLike[str]) -> Path | None:
    """The newest whole checkpoint mmengine saved in ``work_dir``, or ``None`` if there is none.

    Candidates, newest first: the file ``last_checkpoint`` names, then ``iter_N.pth`` / ``epoch_N.pth`` by
    decreasing N. Each one passed over (truncated or corrupt) is reported on stderr.
    """
    work = Path(work_dir)
    candidates: list[Path] = []
    pointer = work / LAST_CHECKPOINT
    if pointer.is_file():
        candidates.append(Path(pointer.read_text().strip()))
    periodic = [(int(match[2]), path) for path in work.glob("*.pth")
                if (match := _PERIODIC.fullmatch(path.name))]
    candidates += [path for _, path in sorted(periodic, reverse=True)]
    seen: set[Path] = set()
    for path in candidates:
        if path.resolve() in seen or not path.is_file():
            continue
        seen.add(path.resolve())
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print(f"mnc-bench: warning: skipping checkpoint {path}: {problem}", file=sys.stderr, flush=True)
    return None


def allow_mmengine_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read mmengine's own checkpoints.

    mmengine 0.10 saves its message hub beside the weights: ``HistoryBuffer`` objects (numpy arrays, and their
    statistics methods pickled as ``getattr(HistoryBuffer, 'mean')``) and numpy scalars in the runtime info.
    The safe unpickler rejects those, so ``resume`` and ``load_from`` fail. We allowlist exactly these globals
    instead of turning ``weights_only`` off (which would let a checkpoint run arbitrary code). ``getattr`` in
    particular is NOT allowed: the name resolves to :func:`_history_buffer_method`, which hands out only
    HistoryBuffer's registered statistics methods.
    """
    import numpy as np
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    # A pickled dtype is rebuilt as np.dtype(...) and then given its state, which needs its class
    # (numpy.dtypes.Float64DType, ...): allow the classes of numpy's built-in numeric/bool/str dtypes.
    dtype_classes = sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGUS"},
                           key=lambda c: c.__name__)
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        *dtype_classes,
        # numpy 2 writes numpy._core.*, numpy 1 wrote numpy.core.*: accept checkpoints from either.
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        (_history_buffer_method, "builtins.getattr"),
    ])


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: only ``HistoryBuffer.<registered statistics method>``."""
    from mmengine.logging.history_buffer import HistoryBuffer

    # The four built-in statistics (registered on first use) and any registered with register_statistics.
    allowed = {"min", "max", "mean", "current", *HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer's "
                                 "statistics methods are allowed")
