# MNC, 5 stages, small CPU model on the synthetic shapes: as mnc_3stage_shapes.py, plus stages 4/5 that run
# on stage 3's regressed boxes and share weights with stages 2/3 (paper). Inference pools the stage-2/3
# instances on the proposals with the stage-4/5 instances on their regressed boxes (2 x 300).
_base_ = './mnc_3stage_shapes.py'

model = dict(cascade=dict(num_stages=5))
