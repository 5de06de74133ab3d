"""Stage-1 proposals from mmdet's RPNHead that keep their autograd graph to the RPN's box deltas.

mmdet's own `RPNHead.predict_by_feat` detaches the head outputs (`select_single_mlvl(..., detach=True)`),
which would cut MNC's end-to-end path (stage-2/3 losses -> RoI warping -> proposal boxes -> RPN deltas).
This decoder follows the same steps as mmdet's (per-level top-k, decode with the head's own bbox coder, size
filter, NMS with a separate pass per level, top N) but only the discrete choices (ranking, NMS) see detached
copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet.models.dense_heads import RPNHead
from mmdet.structures.bbox import get_box_tensor
from torch import Tensor

from mnc_bench.models.mnc.boxes import clip_boxes, clip_gradient, inside_image


def rpn_proposals(
    rpn_head: RPNHead,
    cls_scores: Sequence[Tensor],
    bbox_preds: Sequence[Tensor],
    image_shapes: Sequence[tuple[int, int]],
    *,
    nms_pre: int,
    max_per_img: int,
    nms_iou: float,
    min_bbox_size: float = 0.0,
    delta_grad_clip: float | None = None,
) -> list[Tensor]:
    """Decode, rank and suppress RPN outputs into per-image proposals.

    Args:
        rpn_head: the RPNHead whose outputs these are (for its anchors and bbox coder).
        cls_scores: per level [B, A * c, H_l, W_l] objectness logits (c = 1 with sigmoid, 2 with softmax).
        bbox_preds: per level [B, A * 4, H_l, W_l] deltas.
        image_shapes: B (height, width) of the unpadded inputs; boxes are clipped to them.
        nms_pre: candidates kept per level before NMS (<= 0 keeps all).
        max_per_img: proposals kept per image after NMS, highest objectness first.
        nms_iou: NMS IoU threshold (0.7 in MNC).
        min_bbox_size: boxes with width or height <= this are dropped (mmdet's convention; < 0 keeps all).
        delta_grad_clip: element-wise bound on the gradient reaching `bbox_preds` through the proposals
            (MNC-code: 1/512 per image, see `MNCCascade.box_grad_bound`); None leaves it unbounded.

    Returns:
        B tensors [R_b, 4], differentiable w.r.t. `bbox_preds`.
    """
    featmap_sizes = [score.shape[-2:] for score in cls_scores]
    # Anchors and boxes in fp32 whatever the heads' dtype under mixed precision (mmdet makes the anchors in
    # the heads' dtype): fp16 places coordinates between 1024 and 2048 px 1 px apart.
    device = bbox_preds[0].device
    anchors = rpn_head.prior_generator.grid_priors(featmap_sizes, dtype=torch.float32, device=device)
    proposals = []
    for image_index, image_shape in enumerate(image_shapes):
        level_boxes, level_scores, level_ids = [], [], []
        for level, (score_map, delta_map, level_anchors) in enumerate(zip(cls_scores, bbox_preds, anchors)):
            logits = score_map[image_index].detach().permute(1, 2, 0).reshape(-1, rpn_head.cls_out_channels)
            # mmdet's softmax RPN puts the object class at index 0.
            scores = logits.sigmoid()[:, 0] if rpn_head.use_sigmoid_cls else logits.softmax(dim=-1)[:, 0]
            deltas = delta_map[image_index].permute(1, 2, 0).reshape(-1, rpn_head.bbox_coder.encode_size)
            deltas = deltas.float()
            if 0 < nms_pre < scores.numel():
                scores, top = scores.topk(nms_pre)
                deltas, level_anchors = deltas[top], level_anchors[top]
            deltas = clip_gradient(deltas, delta_grad_clip)
            boxes = get_box_tensor(rpn_head.bbox_coder.decode(level_anchors, deltas))
            # As MNC-code's proposal layer: no box gradient through anchors or proposals crossing the border.
            inside = inside_image(level_anchors, image_shape) & inside_image(boxes.detach(), image_shape)
            boxes = clip_boxes(torch.where(inside[:, None], boxes, boxes.detach()), image_shape)
            level_boxes.append(boxes)
            level_scores.append(scores)
            level_ids.append(torch.full_like(scores, level, dtype=torch.long))
        boxes, scores, ids = torch.cat(level_boxes), torch.cat(level_scores), torch.cat(level_ids)
        if min_bbox_size >= 0:
            sizes = (boxes[:, 2:] - boxes[:, :2]).detach()
            large_enough = (sizes > min_bbox_size).all(dim=1)
            boxes, scores, ids = boxes[large_enough], scores[large_enough], ids[large_enough]
        from torchvision.ops import batched_nms  # on first use (mnc_bench.models.roi_align.tv_roi_align)

        keep = batched_nms(boxes.detach().float(), scores.float(), ids, nms_iou)[:max_per_img]
        proposals.append(boxes[keep])
    return proposals
