# MNC, 5 stages (stages 4/5 share weights with 2/3 and run on stage 3's regressed boxes), R50-FPN,
# COCO 2017, 1x.
# Everything else as mnc_3stage_coco_r50.py.
_base_ = './mnc_3stage_coco_r50.py'

model = dict(cascade=dict(num_stages=5))
