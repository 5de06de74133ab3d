"""SOLOv2 whose predictions carry boxes: each instance's tight box around its predicted mask.

mmdet 3.3's SOLOv2 is box-free and fills ``pred_instances.bboxes`` with zeros, which makes every box metric 0
"by construction" and the model's box AP look like a failure next to the others. Mask2Former, the other
box-free model here, gets its boxes in mmdet as the tight boxes of its masks (``mask2bbox``); this subclass
does the same for SOLOv2, so both unified models' box AP mean the same thing. Training and the masks are
mmdet's, unchanged.
"""

from __future__ import annotations

from mmdet.models.detectors import SOLOv2
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.mask import mask2bbox
from torch import Tensor


@MODELS.register_module()
class SOLOv2MaskBoxes(SOLOv2):
    """mmdet's SOLOv2 with ``pred_instances.bboxes`` [N, 4] (x1, y1, x2, y2) = the tight box of each mask."""

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList, rescale: bool = True,
                **kwargs) -> SampleList:
        samples = super().predict(batch_inputs, batch_data_samples, rescale=rescale, **kwargs)
        for sample in samples:
            instances = sample.pred_instances
            instances.bboxes = mask2bbox(instances.masks).to(instances.masks.device)
        return samples
