"""Proposal-quality controls for ablations, applied to the per-image proposals between stage 1 and stage 2.

In order: `mode` chooses the source ("rpn" keeps stage 1's proposals, "oracle" replaces them by boxes drawn
around each ground-truth box at a given IoU, "random" by uniformly random boxes), then `jitter` adds Gaussian
noise, then `max_proposals` keeps the first boxes: the highest-scoring for the RPN; for the oracle, whose
boxes are ordered round-robin over the ground-truth objects, the same number per object (give or take one).
Each control applies in training, at test time or both (`apply_at`). Oracle and random boxes are constants;
jitter and the cap keep the gradient to stage 1. All randomness comes from a private generator seeded by
`seed` (plus the process rank under a distributed launcher, so GPUs draw different noise), so a run is
reproducible and the controls do not shift the global RNG stream that the rest of training uses. The generator
state is not part of checkpoints: a resumed run draws a fresh noise stream from the seed. The generator lives
on the CPU and every draw is made there, then moved to the proposals' device: a run on a GPU draws the same
boxes as on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from mnc_bench.models.mnc.config import ParameterError

Mode = Literal["rpn", "oracle", "random"]
ApplyAt = Literal["train", "test", "both"]


class ProposalControl:
    """Callable `(proposals, image_sizes, gt_boxes, training) -> proposals`; a no-op with the defaults."""

    def __init__(
        self,
        *,
        mode: Mode = "rpn",
        max_proposals: int | None = None,
        jitter: float = 0.0,
        oracle_iou: float = 0.7,
        oracle_per_gt: int = 10,
        num_random: int = 300,
        min_random_size: float = 4.0,
        apply_at: ApplyAt = "both",
        seed: int = 0,
        rank: int = 0,
    ):
        """`jitter` is the noise std as a fraction of box width (x coordinates) and height (y coordinates);
        `rank` (the process rank) offsets the seed."""
        if mode not in ("rpn", "oracle", "random"):
            raise ParameterError("proposal_control.mode",
                                 f"must be 'rpn', 'oracle' or 'random', got {mode!r}")
        if apply_at not in ("train", "test", "both"):
            raise ParameterError(
                "proposal_control.apply_at", f"must be 'train', 'test' or 'both', got {apply_at!r}"
            )
        if max_proposals is not None and max_proposals < 1:
            raise ParameterError(
                "proposal_control.max_proposals", f"must be >= 1 or None, got {max_proposals}"
            )
        if jitter < 0:
            raise ParameterError("proposal_control.jitter", f"must be >= 0, got {jitter}")
        if not 0.01 <= oracle_iou <= 1.0:
            raise ParameterError("proposal_control.oracle_iou", f"must be in [0.01, 1], got {oracle_iou}")
        if oracle_per_gt < 1:
            raise ParameterError("proposal_control.oracle_per_gt", f"must be >= 1, got {oracle_per_gt}")
        if num_random < 1:
            raise ParameterError("proposal_control.num_random", f"must be >= 1, got {num_random}")
        if min_random_size <= 0:
            raise ParameterError("proposal_control.min_random_size", f"must be > 0, got {min_random_size}")
        self.mode = mode
        self.max_proposals = max_proposals
        self.jitter = jitter
        self.oracle_iou = oracle_iou
        self.oracle_per_gt = oracle_per_gt
        self.num_random = num_random
        self.min_random_size = min_random_size
        self.apply_at = apply_at
        self.generator = torch.Generator().manual_seed(seed + rank)

    @property
    def is_identity(self) -> bool:
        return self.mode == "rpn" and self.max_proposals is None and self.jitter == 0.0

    def applies(self, training: bool) -> bool:
        return self.apply_at == "both" or (self.apply_at == "train") == training

    def __call__(
        self,
        proposals: Sequence[Tensor],
        *,
        image_sizes: Sequence[tuple[int, int]],
        gt_boxes: Sequence[Tensor] | None,
        training: bool,
    ) -> list[Tensor]:
        """Args: proposals: B tensors [P_b, 4]; image_sizes: B (height, width); gt_boxes: B tensors [G_b, 4],
        needed by the oracle. Returns B tensors [P'_b, 4]."""
        if self.is_identity or not self.applies(training):
            return list(proposals)
        if self.mode == "oracle" and gt_boxes is None:
            raise ParameterError(
                "proposal_control.mode",
                "'oracle' needs ground-truth boxes (keep LoadAnnotations in the test pipeline)",
            )
        result = []
        for index, (boxes, size) in enumerate(zip(proposals, image_sizes)):
            if self.mode == "oracle":
                boxes = self.oracle_boxes(gt_boxes[index].to(boxes), self.oracle_iou)
            elif self.mode == "random":
                boxes = self.random_boxes(size, device=boxes.device).to(boxes.dtype)
            if self.jitter > 0:
                boxes = self.jitter_boxes(boxes)
            if self.max_proposals is not None:
                boxes = boxes[: self.max_proposals]
            result.append(boxes)
        return result

    def _normal(self, shape: Sequence[int], device: torch.device) -> Tensor:
        """float64 N(0, 1) draws of the CPU generator, on `device`."""
        return torch.randn(*shape, generator=self.generator, dtype=torch.float64, device="cpu").to(device)

    def _uniform(self, shape: Sequence[int], device: torch.device) -> Tensor:
        """float64 U[0, 1) draws of the CPU generator, on `device`."""
        return torch.rand(*shape, generator=self.generator, dtype=torch.float64, device="cpu").to(device)

    def jitter_boxes(self, boxes: Tensor) -> Tensor:
        """Add N(0, (jitter * w)^2) to x1, x2 and N(0, (jitter * h)^2) to y1, y2; corners are re-sorted."""
        widths = (boxes[:, 2] - boxes[:, 0]).detach()
        heights = (boxes[:, 3] - boxes[:, 1]).detach()
        scale = torch.stack((widths, heights, widths, heights), dim=1)
        noise = self._normal((boxes.shape[0], 4), boxes.device).to(boxes.dtype) * self.jitter * scale
        moved = boxes + noise
        x_low, x_high = torch.minimum(moved[:, 0], moved[:, 2]), torch.maximum(moved[:, 0], moved[:, 2])
        y_low, y_high = torch.minimum(moved[:, 1], moved[:, 3]), torch.maximum(moved[:, 1], moved[:, 3])
        return torch.stack((x_low, y_low, x_high, y_high), dim=1)

    def random_boxes(self, image_size: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
        """`num_random` boxes [num_random, 4] (float32, on `device`) uniformly placed in the image, at least
        `min_random_size` pixels per side."""
        height, width = image_size
        sizes = torch.tensor([width, height], dtype=torch.float64, device=device)
        min_size = torch.minimum(sizes, torch.full_like(sizes, self.min_random_size))
        extent = min_size + self._uniform((self.num_random, 2), device) * (sizes - min_size)
        top_left = self._uniform((self.num_random, 2), device) * (sizes - extent)
        return torch.cat((top_left, top_left + extent), dim=1).float()

    def oracle_boxes(self, gt_boxes: Tensor, target_iou: float) -> Tensor:
        """`oracle_per_gt` boxes around each ground-truth box whose IoU with it equals `target_iou` (to 1e-4),
        ordered round-robin: box k belongs to ground truth k mod G.

        Each box moves its GT box along a random direction in (dx, dy, log dw, log dh) space; the distance
        along the direction is found by bisection on the IoU (IoU is 1 at distance 0 and < target at the far
        end, so a crossing exists). Boxes are not clipped to the image: clipping would change their IoU.
        """
        if gt_boxes.shape[0] == 0:
            return gt_boxes.new_zeros(0, 4)
        gt = gt_boxes.detach().double().repeat(self.oracle_per_gt, 1)  # [M, 4]
        direction = self._normal((gt.shape[0], 4), gt.device)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp(min=1e-12)
        low = torch.zeros(gt.shape[0], dtype=torch.float64, device=gt.device)
        # At distance 16 some coordinate moved >= 8 widths or scaled by e^8: IoU below any valid target.
        high = torch.full((gt.shape[0],), 16.0, dtype=torch.float64, device=gt.device)
        for _ in range(60):
            middle = (low + high) / 2
            still_close = self._iou_along(gt, direction, middle) >= target_iou
            low = torch.where(still_close, middle, low)
            high = torch.where(still_close, high, middle)
        return self._move(gt, direction, low).to(gt_boxes.dtype)

    @staticmethod
    def _move(gt: Tensor, direction: Tensor, distance: Tensor) -> Tensor:
        widths, heights = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
        step = direction * distance[:, None]
        centre_x = (gt[:, 0] + gt[:, 2]) / 2 + step[:, 0] * widths
        centre_y = (gt[:, 1] + gt[:, 3]) / 2 + step[:, 1] * heights
        new_w, new_h = widths * step[:, 2].exp(), heights * step[:, 3].exp()
        return torch.stack(
            (centre_x - new_w / 2, centre_y - new_h / 2, centre_x + new_w / 2, centre_y + new_h / 2), dim=1
        )

    @classmethod
    def _iou_along(cls, gt: Tensor, direction: Tensor, distance: Tensor) -> Tensor:
        return paired_iou(cls._move(gt, direction, distance), gt)


def paired_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """IoU of boxes[i] with others[i]: [M, 4], [M, 4] -> [M]."""
    width = (torch.minimum(boxes[:, 2], others[:, 2]) - torch.maximum(boxes[:, 0], others[:, 0])).clamp(min=0)
    height = (torch.minimum(boxes[:, 3], others[:, 3]) - torch.maximum(boxes[:, 1], others[:, 1])).clamp(0)
    intersection = width * height
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return intersection / (area + other_area - intersection).clamp(min=1e-12)
