"""Linking per-frame instances into tracks by mask IoU: the association every per-frame video baseline starts
from (e.g. the IoU tracker of the MOTS baselines; MaskTrack R-CNN adds an appearance embedding to it).

Frame by frame, the instances of the new frame are matched to the live tracks by the Hungarian algorithm on
their mask IoU with each track's last mask (scipy's ``linear_sum_assignment``, maximising the summed IoU); a
pair is kept only if its IoU is at least ``min_iou``. A matched instance continues its track; an unmatched one
starts a new track. A track stays live, with its last mask, while it was seen in one of the last ``max_age``
frames, so an object missed or hidden for ``max_age - 1`` frames keeps its identity. Matching ignores the
class: a per-frame class that flickers does not break the track (the video metric votes a track's class).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every mask of ``a`` [N, H, W] with every mask of ``b`` [M, H, W] (bool) -> [N, M]."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    intersection = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return intersection / union.clamp(min=1)


@dataclass
class _Track:
    track_id: int
    mask: Tensor  # [H, W] bool, the last one seen
    last_seen: int


@dataclass
class MaskIoULinker:
    """Stateful linker of one video at a time; :meth:`reset` at each video's first frame."""

    min_iou: float = 0.3
    max_age: int = 2
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0
    _frame: int = -1

    def __post_init__(self) -> None:
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou: must be in (0, 1], got {self.min_iou}")
        if self.max_age < 1:
            raise ValueError(f"max_age: must be >= 1, got {self.max_age}")

    def reset(self) -> None:
        self._tracks, self._next_id, self._frame = [], 0, -1

    def step(self, masks: Tensor) -> Tensor:
        """Track ids [N] (int64, from 0 per video) of the next frame's instances, given their masks [N, H,
        W]."""
        self._frame += 1
        self._tracks = [t for t in self._tracks if self._frame - t.last_seen <= self.max_age]
        ids = torch.full((masks.shape[0],), -1, dtype=torch.int64, device=masks.device)
        if self._tracks and masks.shape[0]:
            ious = mask_iou(masks, torch.stack([t.mask for t in self._tracks])).cpu().numpy()
            rows, cols = linear_sum_assignment(ious, maximize=True)
            for row, col in zip(rows, cols):
                if ious[row, col] >= self.min_iou:
                    ids[row] = self._tracks[col].track_id
                    self._tracks[col].mask, self._tracks[col].last_seen = masks[row], self._frame
        for row in np.flatnonzero((ids < 0).cpu().numpy()):
            ids[row] = self._next_id
            self._tracks.append(_Track(self._next_id, masks[row], self._frame))
            self._next_id += 1
        return ids
