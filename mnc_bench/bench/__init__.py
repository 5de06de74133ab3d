"""Benchmarks that print figures (``mnc-bench bench models|data|eval``, ``make bench``); no test times
anything.

- `models`: the models side by side: inference latency (pre / network / post-processing), training speed,
  FLOPs, peak memory and the share of the machine's measured matmul peak, as ratios to Mask R-CNN;
- `data`: generating the shapes dataset;
- `eval`: VOC region AP and COCO segm evaluation on a VOC12-val-sized synthetic workload.

Speed is compared as ratios measured side by side in one run, so a noisy machine shifts every row alike.
"""

# The models bench's defaults, kept here, free of heavy imports, for the CLI's options and help.
# The small CPU configs compared on shapes.
DEFAULT_CONFIGS = (
    "configs/mask_rcnn/mask_rcnn_shapes.py",
    "configs/panet/panet_shapes.py",
    "configs/mnc/mnc_3stage_shapes.py",
    "configs/mnc/mnc_5stage_shapes.py",
)
DEFAULT_SIZES = (128,)  # input sizes in pixels: the shapes configs' own
DEFAULT_REPEATS = 10  # timed images per model and score threshold
DEFAULT_TRAIN_ITERS = 5  # timed training iterations per model
DEFAULT_WARMUP = 2  # untimed images and iterations per model before timing
MODELS_JSON = "results/bench/models.json"  # where `bench models` writes and `report --bench` reads
