# MNC, 3 stages, R50-FPN, VOC 2012 + SBD masks (20 classes, MNC's split): mnc_5stage_voc_sbd.py without the
# second mask/classification round (the paper's 3-stage row).
_base_ = './mnc_5stage_voc_sbd.py'

model = dict(cascade=dict(num_stages=3))
