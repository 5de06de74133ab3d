"""The ``mnc-bench`` command line: parse arguments, then call library functions (imported lazily).

Nothing heavy (torch, mmdet) is imported at module level, so ``mnc-bench --help`` answers fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mnc_bench.allocator import tune_allocator
from mnc_bench.bench import (
    DEFAULT_CONFIGS,
    DEFAULT_REPEATS,
    DEFAULT_SIZES,
    DEFAULT_TRAIN_ITERS,
    DEFAULT_WARMUP,
    MODELS_JSON,
)
from mnc_bench.errors import UserError
from mnc_bench.io import check_writable_output
from mnc_bench.suites.contract import (
    EXECUTORS,
    LAUNCHERS,
    MAX_SEED,
    RESULTS_ROOT,
    SLURM_CPUS_PER_GPU,
    SLURM_MEM_GB_PER_GPU,
)


def _cmd_env(args: argparse.Namespace) -> int:
    from mnc_bench.env import collect_env, env_problems, format_env

    info = collect_env()
    print(format_env(info))
    problems = env_problems(info)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    check_writable_output(args.out, "--out", directory=True)
    if args.layout == "shapes":
        from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset

        config = ShapesConfig(image_size=args.size or ShapesConfig.image_size, seed=args.seed)
        summary = write_shapes_dataset(args.out, num_train=args.train, num_val=args.val, config=config)
    else:
        from mnc_bench.data.layouts import write_layout_dataset

        summary = write_layout_dataset(args.out, args.layout, num_train=args.train, num_val=args.val,
                                       image_size=args.size, seed=args.seed)
    print(summary)
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mnc_bench.data.video_check import check_dataset

    if args.images is not None and not Path(args.images).is_dir():
        raise UserError(f"--images {args.images}: not a folder")
    report = check_dataset(args.annotations, images_dir=args.images, max_problems=args.max_problems)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_data_sbd2coco(args: argparse.Namespace) -> int:
    from mnc_bench.data.sbd import convert_sbd

    check_writable_output(args.out, "--out", directory=True)
    print(convert_sbd(args.sbd, args.out, voc_root=args.voc, split=args.split, copy_images=args.copy_images))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mnc_bench.demo import run_demo

    check_writable_output(args.out, "--out", directory=True)
    check_writable_output(args.report, "--report", directory=True)
    return run_demo(args.out, workers=args.workers, report_dir=args.report)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo",
                       help="the demo suite end to end on the synthetic shapes (what `make demo` runs)",
                       description="Run the `demo` suite (configs/ablations/demo.yaml: MNC 3/5-stage, Mask "
                       "R-CNN and PANet, 2 seeds, a schedule of minutes on a small synthetic set generated "
                       "on first use) and print its table. Rerunning skips finished runs and resumes "
                       "interrupted ones.")
    p.add_argument("--out", default="results/demo",
                   help="results directory of the suite (default results/demo)")
    p.add_argument("--workers", type=_positive_int, default=2, help="runs at a time (default 2)")
    p.add_argument("--report", default="reports/demo", help="report folder (default reports/demo)")
    p.set_defaults(handler=_cmd_demo)


def _add_env(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="versions of the stack, whether mmcv ops load (and run on the GPU), "
                       "device",
                       description="Print the Python, torch, mmcv, mmdet and mmengine versions, whether "
                       "mmcv's compiled ops (RoIAlign, NMS) load and have CUDA kernels (tried on the GPU "
                       "when one is visible), the torch thread count and the device. Exits 1, naming the "
                       "problem, when a required package does not import, the ops do not load, or a GPU is "
                       "visible and the ops cannot run on it.")
    p.set_defaults(handler=_cmd_env)


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make, convert and validate datasets",
                          description="Datasets in COCO format: generate the synthetic shapes dataset "
                          "(synth) or its clips (synth-video), validate a COCO instances or video file "
                          "(check), convert SBD's VOC instance masks (sbd2coco) or an official YouTube-VIS / "
                          "OVIS json (ytvis2coco).")
    data_sub = data.add_subparsers(dest="data_command", required=True,
                                   metavar="{synth,synth-video,check,sbd2coco,ytvis2coco}")

    synth = data_sub.add_parser("synth", help="write the procedural 'shapes' dataset in COCO format",
                                description="Write the procedural shapes dataset (4 classes, RLE masks) to "
                                "OUT: {train,val}/*.png and annotations/instances_{train,val}.json. "
                                "Deterministic from --seed; built in a temporary folder and renamed into "
                                "place.")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--train", type=_non_negative_int, default=1000, help="train images (default 1000)")
    synth.add_argument("--val", type=_non_negative_int, default=200, help="val images (default 200)")
    synth.add_argument("--size", type=_positive_int, default=None,
                       help="image side in pixels (default 128; 800 in the coco layout, 600 in the voc "
                       "layout)")
    synth.add_argument("--layout", choices=("shapes", "coco", "voc"), default="shapes",
                       help="file layout: the shapes' own, or that of COCO 2017 / SBD for VOC with every "
                       "class of the dataset listed (to rehearse the COCO and VOC suites: run --smoke; "
                       "default shapes)")
    synth.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    synth.set_defaults(handler=_cmd_data_synth)

    _add_data_synth_video(data_sub)

    check = data_sub.add_parser(
        "check", help="validate a COCO-format instance-segmentation dataset (or a video one)",
        description="List every problem of a COCO instances file, a COCO-video file or an official "
        "YouTube-VIS file (the layout is read from the file), one line each naming the record (the "
        "evaluators apply the same rules and stop at the first). Exit 0 when clean, 1 when problems were "
        "found, 2 when the file cannot be read.")
    check.add_argument("annotations", help="COCO instances, COCO-video or YouTube-VIS JSON")
    check.add_argument("--images", help="image directory (checks that every image file exists)")
    check.add_argument("--max-problems", type=_positive_int, default=200, help="stop listing after this many")
    check.set_defaults(handler=_cmd_data_check)

    sbd = data_sub.add_parser("sbd2coco", help="convert SBD's VOC instance masks (inst/*.mat) to COCO json",
                              description="Convert SBD's instance masks for PASCAL VOC to COCO json "
                              "(OUT/annotations/instances_{train,val}.json) with OUT/images linking or "
                              "copying the JPEGs; --split mnc gives MNC's VOC 2012 train/val split.")
    sbd.add_argument("--sbd", required=True,
                     help="SBD's benchmark_RELEASE/dataset (inst/, cls/, img/, train.txt)")
    sbd.add_argument("--voc",
                     help="VOCdevkit/VOC2012 (JPEGImages/, ImageSets/Main/); required for --split mnc")
    sbd.add_argument("--out", required=True,
                     help="output directory (annotations/instances_{train,val}.json, images)")
    sbd.add_argument("--split", choices=("mnc", "sbd"), default="mnc",
                     help="mnc: VOC12 train/val images with SBD masks, 5623/5732 (default); sbd: SBD's "
                     "train/val.txt")
    sbd.add_argument("--copy-images", action="store_true",
                     help="copy the images used instead of linking the folder")
    sbd.set_defaults(handler=_cmd_data_sbd2coco)
    _add_data_ytvis2coco(data_sub)


def _cmd_data_synth_video(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from mnc_bench.data.video import VideoConfig, write_video_dataset

    check_writable_output(args.out, "--out", directory=True)
    low, high = args.frames
    default = VideoConfig()
    config = VideoConfig(shapes=replace(default.shapes, image_size=args.size, seed=args.seed),
                         min_frames=low, max_frames=high, camera_shake=args.camera_shake)
    print(write_video_dataset(args.out, num_train=args.videos, num_val=args.val_videos, config=config))
    return 0


def _frame_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        bounds = (int(low), int(high) if sep else int(low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected T or MIN-MAX frames per clip, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= MIN <= MAX frames, got {text!r}")
    return bounds


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _add_data_synth_video(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser("synth-video", help="write procedural shapes clips (YouTube-VIS layout)",
                            description="Write clips of the shapes world in motion to OUT: "
                            "{train,val}/JPEGImages/<video>/<frame>.png, annotations/ytvis_{train,val}.json "
                            "(official YouTube-VIS layout) and annotations/instances_{train,val}.json (its "
                            "COCO-video conversion: what mmdet's YouTubeVISDataset reads, and a per-frame "
                            "COCO file for image models). Deterministic from --seed; built in a temporary "
                            "folder and renamed into place.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--videos", type=_non_negative_int, default=60, help="train clips (default 60)")
    p.add_argument("--val-videos", type=_non_negative_int, default=20,
                   help="val clips, the test split (default 20)")
    p.add_argument("--frames", type=_frame_range, default=(8, 12), metavar="T|MIN-MAX",
                   help="frames per clip, fixed or drawn per clip (default 8-12)")
    p.add_argument("--size", type=_positive_int, default=128, help="frame side in pixels (default 128)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--camera-shake", type=_non_negative_float, default=1.0, metavar="PX",
                   help="std of the camera's per-frame step in pixels, 0 for a still camera (default 1)")
    p.set_defaults(handler=_cmd_data_synth_video)


def _cmd_data_ytvis2coco(args: argparse.Namespace) -> int:
    from mnc_bench.data.video_format import convert_youtube_vis

    check_writable_output(args.out, "--out")
    print(convert_youtube_vis(args.annotations, args.out))
    return 0


def _add_data_ytvis2coco(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser("ytvis2coco", help="convert an official YouTube-VIS/OVIS json to COCO-video",
                            description="Check an official YouTube-VIS (2019, 2021) or OVIS annotation file "
                            "and write its COCO-video conversion (ids numbered as mmdet's youtubevis2coco.py "
                            "does), the layout the video configs and evaluators read.")
    p.add_argument("annotations", help="official YouTube-VIS JSON (a record per track)")
    p.add_argument("--out", required=True, metavar="OUT.json", help="COCO-video JSON to write")
    p.set_defaults(handler=_cmd_data_ytvis2coco)


# argparse names a type function in its message when it raises ValueError ("invalid _positive_int value"):
# these raise ArgumentTypeError, whose message argparse prints as is.
def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "a non-negative integer")


def _seed(text: str) -> int:
    seed = _int_at_least(text, 0, f"an integer from 0 to {MAX_SEED}")
    if seed > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {text}")
    return seed


def _cfg_option(text: str) -> str:
    # nargs="+" also swallows a positional that follows (`--cfg-options k=v CONFIG`), which argparse would
    # then report as missing: name the token instead.
    if "=" in text:
        return text
    import os

    hint = " (it looks like the config file: put it before --cfg-options)" if os.path.isfile(text) else ""
    raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}{hint}")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mnc_bench.evaluation import evaluate, format_results, results_to_json

    results = evaluate(args.gt, args.pred, metric=args.metric, iou_type=args.iou_type, backend=args.backend)
    print(results_to_json(results) if args.json else format_results(results))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a results file: COCO AP/AR, VOC region AP, proposal recall",
                       description="Score a COCO results file against COCO ground truth: COCO AP/AR (segm or "
                       "bbox), VOC/SBD region AP under the SDS and MNC protocols, or proposal recall. Bad "
                       "input is one `error:` line naming the record and field (exit 2).")
    p.add_argument("--gt", required=True, metavar="ANNOTATIONS.json", help="COCO instances ground truth")
    p.add_argument("--pred", required=True, metavar="RESULTS.json",
                   help="COCO results list; for --metric proposals, {image_id, bbox, score} records")
    p.add_argument("--metric", choices=("coco", "voc_sds", "voc_mnc", "all", "proposals", "boundary", "tide"),
                   default="all", help="all = coco + voc_sds + voc_mnc (default all); boundary: Boundary AP "
                   "(masks); tide: TIDE's error breakdown (dAP per error type)")
    p.add_argument("--iou-type", choices=("segm", "bbox"), default="segm",
                   help="IoU for the COCO metrics and TIDE (default segm); VOC region AP and Boundary AP "
                   "always use masks")
    p.add_argument("--backend", choices=("pycocotools", "faster_coco_eval"), default="pycocotools",
                   help="COCO evaluation code (default pycocotools; both give the same numbers)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every number (NaN: null)")
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate_video(args: argparse.Namespace) -> int:
    from mnc_bench.evaluation import format_results, results_to_json
    from mnc_bench.evaluation.video import evaluate_video

    results = evaluate_video(args.gt, args.pred, score_thr=args.score_thr)
    print(results_to_json(results) if args.json else format_results(results))
    return 0


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _add_evaluate_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-video",
                       help="score tracked predictions: video AP, per-frame AP, MOTS, HOTA, stability",
                       description="Score tracked predictions (COCO result records with a track_id) against "
                       "a COCO-video ground truth: YouTube-VIS video AP, per-frame mask AP, MOTS (sMOTSA, "
                       "IDSW), HOTA, IDF1 and the mask-stability measure (docs/video.md). Bad input is one "
                       "`error:` line naming the record (exit 2).")
    p.add_argument("--gt", required=True, metavar="INSTANCES.json", help="COCO-video ground truth")
    p.add_argument("--pred", required=True, metavar="RESULTS.json", help="tracked result records")
    p.add_argument("--score-thr", type=_score, default=0.5,
                   help="per-frame score an instance needs for the tracking and stability measures "
                   "(default 0.5)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every number (NaN: null)")
    p.set_defaults(handler=_cmd_evaluate_video)


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from mnc_bench.training import format_metrics, train

    if args.local_rank is not None:  # torch.distributed.launch passes --local-rank; mmengine reads the env
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    result = train(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options, seed=args.seed,
                   deterministic=args.deterministic, resume=args.resume, resume_from=args.resume_from,
                   load_from=args.load_from, launcher=args.launcher, amp=args.amp)
    if not _main_process():
        return 0
    if result.metrics:
        print(format_metrics(result.metrics))
    print(f"work dir {result.work_dir}"
          + (f", last checkpoint {result.checkpoint}" if result.checkpoint else ""))
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    import os

    if args.corruptions is not None:
        return _cmd_test_corrupted(args)
    if args.severities is not None or args.images is not None or args.subset is not None:
        raise UserError("--severities, --images and --subset shape a corrupted pass: give --corruptions too")
    if args.out is not None:
        check_writable_output(args.out, "--out")
    if args.soft_masks is not None:
        from mnc_bench.soft_masks import require_empty_output

        check_writable_output(args.soft_masks, "--soft-masks", directory=True)
        require_empty_output(args.soft_masks)
    from mnc_bench.training import evaluate_checkpoint, format_metrics

    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    result = evaluate_checkpoint(args.config, args.checkpoint, out=args.out, work_dir=args.work_dir,
                                 cfg_options=args.cfg_options, launcher=args.launcher,
                                 soft_masks=args.soft_masks, amp=args.amp)
    if not _main_process():
        return 0
    print(format_metrics(result.metrics))
    if result.predictions is not None:
        print(f"predictions {result.predictions}")
    if args.soft_masks is not None:
        print(f"soft masks {args.soft_masks} (index.json)")
    return 0


def _main_process() -> bool:
    """False on the other ranks of a distributed run: rank 0 prints the results they share."""
    from mmengine.dist import is_main_process

    return is_main_process()


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", help="logs and checkpoints (default work_dirs/<config name>)")
    p.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE", type=_cfg_option,
                   help="override config entries, e.g. data_root=/data/coco/ train_cfg.max_iters=100")
    p.add_argument("--launcher", choices=LAUNCHERS, default="none",
                   help="distributed launcher: pytorch under torchrun, slurm under srun (default none)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision on the GPU (mmengine's AmpOptimWrapper for training, fp16 test "
                   "loop)")
    p.add_argument("--local-rank", "--local_rank", type=int, default=None, help=argparse.SUPPRESS)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model config (mmengine Runner; same data path for every model)",
                       description="Train a model config with mmengine's Runner on the shared data path, "
                       "then print the last validation metrics and where the checkpoints are.")
    p.add_argument("config", help="model config, e.g. configs/mask_rcnn/mask_rcnn_shapes.py")
    _add_run_options(p)
    p.add_argument("--seed", type=_seed, default=None,
                   help="random seed (default: the config's randomness.seed)")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue training from the latest good checkpoint in the work dir (iteration, "
                       "optimizer, lr)")
    start.add_argument("--resume-from", metavar="CHECKPOINT", help="continue training from CHECKPOINT")
    start.add_argument("--load-from", metavar="CHECKPOINT",
                       help="initialise the weights from CHECKPOINT (no resume)")
    p.set_defaults(handler=_cmd_train)


def _add_test(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on the config's test split",
                       description="Evaluate a checkpoint on its config's test split and print the metrics; "
                       "--out also writes the predictions as a COCO results file.")
    p.add_argument("config", help="model config the checkpoint was trained with")
    p.add_argument("checkpoint", help="checkpoint file (.pth)")
    p.add_argument("--out", metavar="PRED.json", help="also write the predictions as a COCO results file")
    _add_soft_masks_option(p)
    _add_run_options(p)
    _add_corruption_options(p).add_argument(
        "--robustness-out", metavar="ROBUSTNESS.json", default=None,
        help="where the record goes (default WORK_DIR/robustness.json)")
    p.set_defaults(handler=_cmd_test)


def _add_soft_masks_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--soft-masks", metavar="DIR",
                   help="also write each instance's mask probabilities as 8-bit PNGs at image size with an "
                   "index (per image and detection; per frame and track for video models); the scored masks "
                   "are unchanged. DIR must not exist or be empty")


def _cmd_test_corrupted(args: argparse.Namespace) -> int:
    from mnc_bench.config_loading import parse_cfg_options
    from mnc_bench.robustness import PassRequest, test_corrupted

    if args.out is not None:
        raise UserError("--out writes the predictions of a plain test; a corrupted pass writes "
                        "--robustness-out")
    if args.soft_masks is not None:
        raise UserError("--soft-masks writes the mask probabilities of a plain test: leave out --corruptions")
    if args.launcher != "none":
        raise UserError("a corrupted pass runs in one process: leave out --launcher")
    request = PassRequest(corruptions=args.corruptions, severities=args.severities, images=args.images,
                          subset=args.subset or "full", seed=args.corruption_seed)
    print(test_corrupted(args.config, args.checkpoint, request, work_dir=args.work_dir,
                         cfg_options=parse_cfg_options(args.cfg_options), out=args.robustness_out))
    return 0


def _add_corruption_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = p.add_argument_group("robustness to corruptions (test time only; the 15 benchmark corruptions of "
                                 "the imagecorruptions package)")
    group.add_argument("--corruptions", nargs="+", metavar="NAME", default=None,
                       help="score the test images clean and under these corruptions: all, a group (noise, "
                       "blur, weather, digital) or corruption names; prints mPC, rPC and AP per corruption")
    group.add_argument("--severities", nargs="+", type=int, metavar="S", default=None,
                       help="severities from 1 to 5 (default: all five, or the --subset's)")
    group.add_argument("--images", type=_positive_int, default=None,
                       help="only the first N test images (default: all, or the --subset's)")
    group.add_argument("--subset", choices=("full", "quick"), default=None,
                       help="full: every severity and image (default); quick: severities 1 3 5, first 50 "
                       "images")
    group.add_argument("--corruption-seed", type=_seed, default=0,
                       help="seed of the corrupted images, recorded in the result (default 0)")
    return group


def _cmd_robustness(args: argparse.Namespace) -> int:
    from mnc_bench.robustness import PassRequest
    from mnc_bench.suites.robustness import suite_robustness

    request = PassRequest(corruptions=args.corruptions or ["all"], severities=args.severities,
                          images=args.images, subset=args.subset or "full", seed=args.corruption_seed)
    print(suite_robustness(args.suite, request, results=args.results, rerun=args.rerun))
    return 0


def _cmd_rescore(args: argparse.Namespace) -> int:
    from mnc_bench.suites.rescore import rescore_suite

    not_scored = rescore_suite(args.suite, args.metric, results=args.results)
    if not_scored:
        print(f"{not_scored} finished run(s) not scored (see above)", file=sys.stderr)
    return 1 if not_scored else 0


def _add_rescore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rescore", help="add Boundary AP, TIDE or proposal recall to the finished runs of a "
                       "suite", description="Score every finished run of a suite with more metric families "
                       "and add the keys to its metrics.json, without training: Boundary AP and TIDE from "
                       "the run's saved predictions.json (no model), proposal recall from its final "
                       "checkpoint (stage 1 over the test images); run `mnc-bench collect SUITE` afterwards.")
    p.add_argument("suite", help="suite name in configs/ablations/ or a suite .yaml file")
    p.add_argument("--metric", nargs="+", choices=("boundary", "tide", "proposals"), required=True,
                   help="families to add: boundary (coco/boundary/*), tide (tide/segm/*, tide/bbox/*), "
                   "proposals (proposals/AR@k)")
    p.add_argument("--results", default=RESULTS_ROOT, help="results root (default %(default)s)")
    p.set_defaults(handler=_cmd_rescore)


def _add_robustness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustness", help="score the finished runs of a suite on corrupted test images",
                       description="For every finished run of a suite, test its checkpoint on the clean and "
                       "corrupted test images (no retraining) and write robustness.json into the run's "
                       "folder (mPC, rPC, AP per corruption and severity); `collect` adds them as "
                       "robustness/* columns. Runs whose robustness.json has the same settings are skipped.")
    p.add_argument("suite", help="suite name in configs/ablations/ or a suite .yaml file")
    p.add_argument("--results", default=RESULTS_ROOT, help="results root (default %(default)s)")
    p.add_argument("--rerun", action="store_true", help="score runs again that have a record already")
    _add_corruption_options(p)
    p.set_defaults(handler=_cmd_robustness)


def _cmd_bench(args: argparse.Namespace) -> int:
    from mnc_bench.io import write_json

    if args.json:
        check_writable_output(args.json, "--json")
    if args.bench_command == "models":
        from mnc_bench.bench.models import ModelsBenchSettings, bench_models
        from mnc_bench.bench.weights import choose_checkpoints

        if args.profile:
            check_writable_output(args.profile, "--profile", directory=True)
        weights = choose_checkpoints(args.weights, args.configs, dict(args.checkpoint or []),
                                     results_root=args.results)
        settings = ModelsBenchSettings(
            configs=tuple(args.configs), sizes=tuple(args.size), batch=args.batch, repeats=args.repeats,
            train_iters=args.train_iters, warmup=args.warmup,
            checkpoints={model: w.path for model, w in weights.items()},
            weights_runs={model: w.run for model, w in weights.items() if w.run},
            device=args.device, threads=args.threads, profile_dir=args.profile)
        figures = bench_models(settings)
    elif args.bench_command == "data":
        from mnc_bench.bench.data import bench_data

        figures = bench_data(args.train, args.val)
    else:
        from mnc_bench.bench.evaluation import bench_evaluation

        figures = bench_evaluation(args.images, args.detections)
    if args.json:
        write_json(args.json, figures, indent=2)
        print(f"wrote {args.json}")
    return 0


def _model_checkpoint(text: str) -> tuple[str, str]:
    model, sep, checkpoint = text.partition("=")
    if not sep or not model or not checkpoint:
        raise argparse.ArgumentTypeError("expected MODEL=CHECKPOINT (MODEL: the config file stem), got "
                                         f"{text!r}")
    return model, checkpoint


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed figures: models side by side, dataset generation, evaluation",
                       description="Measure on this machine and print: the models side by side (inference "
                       "latency, training speed, FLOPs, memory, share of the matmul peak), dataset "
                       "generation, or the evaluation workload. Compare speed by the ratios of one run.")
    bench_sub = p.add_subparsers(dest="bench_command", required=True, metavar="{models,data,eval}")

    models = bench_sub.add_parser(
        "models", help="inference and training of the models side by side (what `make bench` runs first)",
        description="Inference at batch 1 (median and IQR of ms/img; pre-processing, network and "
        "post-processing apart) at each config's score threshold and at 0, training s/iter and img/s, peak "
        "memory, parameters, GFLOPs, the machine's dense matmul peak and each model's share of it, and every "
        "ratio to Mask R-CNN. Models alternate image by image. Writes a table and JSON.")
    models.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), metavar="CONFIG",
                        help="model configs (default: the four shapes models)")
    models.add_argument("--size", nargs="+", type=_positive_int, default=list(DEFAULT_SIZES), metavar="PX",
                        help="input sizes in pixels, e.g. 128 512 800 (default "
                        f"{' '.join(map(str, DEFAULT_SIZES))})")
    models.add_argument("--batch", type=_positive_int, default=None,
                        help="training batch (default: each config's); inference is always at batch 1")
    models.add_argument("--repeats", type=_positive_int, default=DEFAULT_REPEATS,
                        help="timed images per model and score threshold (default %(default)s)")
    models.add_argument("--train-iters", type=_non_negative_int, default=DEFAULT_TRAIN_ITERS,
                        help="timed training iterations per model, 0 to skip training (default %(default)s)")
    models.add_argument("--warmup", type=_non_negative_int, default=DEFAULT_WARMUP,
                        help="untimed images and iterations per model before timing (default %(default)s)")
    models.add_argument("--checkpoint", nargs="+", type=_model_checkpoint, metavar="MODEL=CKPT",
                        help="trained weights for a model, MODEL being its config stem: a checkpoint file, "
                        "or SUITE/RUN_ID, a finished run under --results (random weights otherwise)")
    models.add_argument("--weights", choices=("random", "trained", "ask"), default="random",
                        help="for models without --checkpoint: random weights (default); 'trained': the "
                        "checkpoint of a finished suite run of the unchanged config under --results, where "
                        "there is one; 'ask': offer those (a prompt at a terminal). Random weights mislead "
                        "about MNC's ratios")
    models.add_argument("--results", default=RESULTS_ROOT, metavar="DIR",
                        help="where --weights trained/ask and --checkpoint SUITE/RUN_ID look for suite runs "
                        "(default %(default)s)")
    models.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    models.add_argument("--threads", type=_positive_int, default=None,
                        help="torch intra-op threads (default: torch's, i.e. OMP_NUM_THREADS or the core "
                        "count)")
    models.add_argument("--profile", metavar="DIR",
                        help="also write per-op (torch.profiler) and Python (cProfile) profiles of one "
                        "inference and one training iteration per model to DIR")
    models.add_argument("--json", default=MODELS_JSON, metavar="OUT.json",
                        help="results file (default %(default)s)")
    models.set_defaults(handler=_cmd_bench)

    data = bench_sub.add_parser("data", help="time generating the shapes dataset",
                                description="Time generating the shapes dataset in a temporary folder.")
    data.add_argument("--train", type=_positive_int, default=1000, help="train images (default 1000)")
    data.add_argument("--val", type=_positive_int, default=200, help="val images (default 200)")
    data.add_argument("--json", metavar="OUT.json", help="also write the figures to this file")
    data.set_defaults(handler=_cmd_bench)

    evaluation = bench_sub.add_parser(
        "eval", help="time VOC region AP and COCO segm evaluation on a VOC12-val-sized workload",
        description="Time VOC region AP (both protocols) and COCO segm evaluation (pycocotools and "
        "faster-coco-eval) on a synthetic workload of VOC12 val's size.")
    evaluation.add_argument("--images", type=_positive_int, default=1449, help="images (default 1449)")
    evaluation.add_argument("--detections", type=_positive_int, default=100,
                            help="detections per image (default 100)")
    evaluation.add_argument("--json", metavar="OUT.json", help="also write the figures to this file")
    evaluation.set_defaults(handler=_cmd_bench)


def _cmd_run(args: argparse.Namespace) -> int:
    import time

    started_at = time.time()
    from mnc_bench.config_loading import parse_cfg_options
    from mnc_bench.suites.commands import run_command

    slurm = dict(partition=args.partition, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                 mem_gb=args.mem_gb, timeout_min=args.timeout_min, array_parallelism=args.array_parallelism)
    smoke = None
    if args.smoke or args.smoke_iters is not None or args.smoke_images is not None:
        from mnc_bench.suites.smoke import SmokeSettings

        if not args.smoke:
            raise UserError("--smoke-iters and --smoke-images go with --smoke")
        sizes = dict(zip(("train_images", "test_images"), args.smoke_images or ()))
        smoke = SmokeSettings(**({"iters": args.smoke_iters} if args.smoke_iters else {}), **sizes)
    return run_command(args.suite, results=args.results, workers=args.workers, executor=args.executor,
                       dry_run=args.dry_run, rerun_failed=args.rerun_failed, reuse=not args.no_reuse,
                       seeds=args.seeds, only=args.only,
                       cfg_options=parse_cfg_options(args.cfg_options), slurm=slurm, track=args.track,
                       started_at=started_at, amp=args.amp, smoke=smoke)


def _cmd_status(args: argparse.Namespace) -> int:
    from mnc_bench.suites.commands import status_command

    print(status_command(args.suite, results=args.results))
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from mnc_bench.suites.commands import collect_command

    if args.out:
        check_writable_output(args.out, "--out")
    paths, summary = collect_command(args.suite, results=args.results, out=args.out, include_all=args.all,
                                     update=args.update)
    print(summary)
    print("wrote " + ", ".join(str(path) for path in paths))
    return 0


def _add_suites(sub: argparse._SubParsersAction) -> None:
    suite_help = "suite name in configs/ablations/ (e.g. cascade_depth) or a suite .yaml file"
    results_help = "results root; a suite writes results/<suite>/<run-id>/ (default results)"
    p = sub.add_parser("run", help="run an ablation suite (resumable; local pool or Slurm)",
                       description="Expand a suite file into runs (axes x seeds), validate every run's "
                       "resolved config before anything starts, print the plan, then execute what is not "
                       "done yet, each run in its own process under results/<suite>/<run-id>/. Finished runs "
                       "are skipped; an interrupted run resumes from its last whole checkpoint; a failed run "
                       "is recorded with its reason and the suite goes on.")
    p.add_argument("suite", help=suite_help)
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="runs at a time on this machine; the cores are divided between them (default 1)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: subprocesses here; slurm: one job array through submitit (default local)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan, run nothing")
    p.add_argument("--rerun-failed", action="store_true", help="run failed runs again, from scratch")
    p.add_argument("--no-reuse", action="store_true",
                   help="train runs already done under another suite of the results root (same resolved "
                   "config and seed) instead of copying them")
    p.add_argument("--seeds", type=_seed, nargs="+", default=None, metavar="SEED",
                   help="replace the suite's seeds")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN_ID",
                   help="execute just these runs of the plan (ids as --dry-run prints them); the suite's "
                   "plan for status and collect stays whole")
    p.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE", type=_cfg_option,
                   help="options for every run, on top of the suite's (e.g. data_root=/data/coco/); part of "
                   "the run ids")
    p.add_argument("--results", default=RESULTS_ROOT, help=results_help)
    p.add_argument("--amp", action="store_true",
                   help="every run in mixed precision on its GPU (mmengine's AmpOptimWrapper, fp16 test "
                   "loop); part of the run ids")
    smoke = p.add_argument_group("smoke (a rehearsal: every run for a few iterations on a few images, "
                                 "full-size otherwise, under RESULTS/smoke/; a verdict per run)")
    smoke.add_argument("--smoke", action="store_true", help="rehearse the suite instead of running it")
    smoke.add_argument("--smoke-iters", type=_positive_int, default=None, metavar="N",
                       help="training iterations per run (default 2)")
    smoke.add_argument("--smoke-images", type=_positive_int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                       help="training and test images per run (default 4 2)")
    p.add_argument("--track", metavar="mlflow[=URI]", default=None,
                   help="also log each run (params, training scalars, test metrics, result files) to MLflow; "
                   "default store sqlite:///RESULTS/mlflow.db")
    slurm = p.add_argument_group("slurm (override the suite's `slurm:` settings)")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--gpus-per-run", type=_positive_int, default=None,
                       help="GPUs per run (> 1: one task per GPU, joined by mmengine's pytorch launcher)")
    slurm.add_argument("--cpus-per-run", type=_positive_int, default=None,
                       help=f"CPUs per run, shared by its tasks (default {SLURM_CPUS_PER_GPU} per GPU: the "
                       "rank, its data-loader workers, evaluation)")
    slurm.add_argument("--mem-gb", type=_positive_int, default=None,
                       help=f"host memory per run in GB (default {SLURM_MEM_GB_PER_GPU} per GPU)")
    slurm.add_argument("--timeout-min", type=_positive_int, default=None,
                       help="time limit per job; a run that hits it is requeued and resumes")
    slurm.add_argument("--array-parallelism", type=_positive_int, default=None,
                       help="at most this many runs of the job array at once")
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("status", help="state of every run of a suite",
                       description="List every run of a suite's results directory with its state, duration "
                       "and, for failed runs, the reason.")
    p.add_argument("suite", help=suite_help)
    p.add_argument("--results", default=RESULTS_ROOT, help=results_help)
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("collect", help="a suite's results as one tidy table (parquet + CSV)",
                       description="Gather every run of a suite into one table, a row per run (axes, seed, "
                       "metrics, batch size, lr, train time, s/iter, peak memory, git commit, status), "
                       "written as parquet and CSV (default results/<suite>/collect.{parquet,csv}), and "
                       "print a summary.")
    p.add_argument("suite", help=suite_help)
    p.add_argument("--out", metavar="FILE",
                   help="FILE.parquet or FILE.csv; the other format is written beside it")
    p.add_argument("--all", action="store_true",
                   help="also runs no longer in the suite file (default: the suite's latest plan)")
    p.add_argument("--update", action="store_true",
                   help="keep the finished runs of the table already at the output whose folders are gone "
                   "(the table stays the record of every finished run); runs found are collected afresh")
    p.add_argument("--results", default=RESULTS_ROOT, help=results_help)
    p.set_defaults(handler=_cmd_collect)


def _cmd_report(args: argparse.Namespace) -> int:
    from mnc_bench.reporting import write_report
    from mnc_bench.reporting.names import parse_overrides
    from mnc_bench.reporting.venue import parse_table_widths

    written = write_report(args.suites, args.out, baseline=args.baseline, metric=args.metric,
                           results_dir=args.results, bench=args.bench, figures=not args.no_figures,
                           claims=args.claims, table_widths=parse_table_widths(args.table_width or []),
                           display_name_overrides=parse_overrides(args.display_name or []),
                           qualitative_models=args.qualitative_models)
    figures = len({figure.name for figure in written.figures})  # each drawn at column and text width
    print(f"report {written.markdown} and {written.html} ({len(written.tables)} LaTeX tables, {figures} "
          f"figures; {len(written.skipped)} figure(s) skipped, see the report)")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report",
                       help="comparison tables, LaTeX, figures and an HTML page from collected suites",
                       description="Read the collected table of each suite "
                       "(results/<suite>/collect.parquet|csv) and write report.md, a self-contained "
                       "report.html, tables/*.tex (booktabs) and figures/*.pdf|png: mean ± std over seeds, "
                       "differences to a baseline with bootstrap intervals and the probability of "
                       "improvement, one table per ablation axis, published reference rows apart, "
                       "provenance. Reads results only; never runs a model.")
    p.add_argument("suites", nargs="+", metavar="SUITE",
                   help="suite name, suite file (configs/ablations/NAME.yaml), results folder or collect "
                   "table")
    p.add_argument("--out", required=True, help="output folder, e.g. reports/NAME")
    p.add_argument("--baseline", metavar="MODEL",
                   help="model (config stem) or 'stem [variant]' to compare against, the variant's axis keys "
                   "in full or cut as the tables print them, e.g. 'mnc_3stage_shapes [num_stages=5]' "
                   "(default: Mask R-CNN if present, else the first model)")
    p.add_argument("--metric", default="coco/segm/AP",
                   help="metric of the comparisons and figures, a full key or a unique suffix such as "
                   "segm/AP (default coco/segm/AP)")
    p.add_argument("--results", default=RESULTS_ROOT,
                   help="results root holding <suite>/ (default %(default)s)")
    p.add_argument("--bench", default=MODELS_JSON,
                   help="bench results for GFLOPs and ms/img; skipped when absent (default %(default)s)")
    p.add_argument("--no-figures", action="store_true",
                   help="text and tables only (seconds instead of a minute)")
    p.add_argument("--table-width", nargs="+", action="extend", metavar="[TABLE=]WIDTH",
                   help="print width of the LaTeX tables: column (3.25 in, the default) or text (6.875 in, "
                   "table*); TABLE= limits it to tables whose file stem is or starts with TABLE, e.g. "
                   "main_coco=text, ablation=text")
    p.add_argument("--display-name", nargs="+", action="extend", metavar="MODEL=NAME",
                   help="name printed for a model (config stem or pattern such as 'mnc_*') in tables, "
                   "figures and the qualitative grid, instead of the built-in one")
    p.add_argument("--qualitative-models", nargs="+", metavar="MODEL",
                   help="models of the qualitative grid, in order (default: the baseline, then the best "
                   "model of each family, then the others; models past one figure's width go on in further "
                   "figures)")
    p.add_argument("--claims", metavar="FILE",
                   help="claims file (e.g. configs/claims/mnc.yaml): a verdict per claim and metric from "
                   "these suites' runs, in a Claims section and tables/claims.tex")
    p.set_defaults(handler=_cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnc-bench",
        description="Benchmark and ablation harness for instance segmentation: MNC beside Mask R-CNN, PANet, "
        "Cascade Mask R-CNN, HTC, SOLOv2 and Mask2Former on one training and evaluation path.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a user error (bad config, dataset, argument) too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_env, _add_data, _add_demo, _add_evaluate, _add_evaluate_video, _add_train, _add_test,
                _add_suites, _add_robustness, _add_rescore, _add_bench, _add_report):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # a command (not a call from Python, e.g. a test or notebook): tune this process's malloc
    if argv is None:
        tune_allocator()
    try:
        return args.handler(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
