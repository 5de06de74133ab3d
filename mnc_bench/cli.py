"""The ``mnc-bench`` command line: parse arguments, then call library functions (imported lazily).

Nothing heavy (torch, mmdet) is imported at module level, so ``mnc-bench --help`` answers fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mnc_bench.errors import UserError

Handler = Callable[[argparse.Namespace], int]


def _cmd_env(args: argparse.Namespace) -> int:
    from mnc_bench.env import collect_env, format_env

    print(format_env(collect_env()))
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from mnc_bench.data.synthetic import ShapesConfig, write_shapes_dataset

    config = ShapesConfig(image_size=args.size, seed=args.seed)
    summary = write_shapes_dataset(args.out, num_train=args.train, num_val=args.val, config=config)
    print(summary)
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from mnc_bench.data.check import check_coco_dataset

    report = check_coco_dataset(args.annotations, images_dir=args.images, max_problems=args.max_problems)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_data_sbd2coco(args: argparse.Namespace) -> int:
    from mnc_bench.data.sbd import convert_sbd

    print(convert_sbd(args.sbd, args.out, voc_root=args.voc, split=args.split, copy_images=args.copy_images))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mnc_bench.demo import run_demo

    for line in run_demo(args.out):
        print(line)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the default demo on the embedded synthetic dataset (what `make demo` runs)")
    p.add_argument("--out", default="results/demo", help="output directory (default results/demo)")
    p.set_defaults(handler=_cmd_demo)


def _add_env(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="versions of the stack, whether mmcv ops load, threads, device")
    p.set_defaults(handler=_cmd_env)


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make, convert and validate datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="{synth,check,sbd2coco}")

    synth = data_sub.add_parser("synth", help="write the procedural 'shapes' dataset in COCO format")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--train", type=_non_negative_int, default=1000, help="train images (default 1000)")
    synth.add_argument("--val", type=_non_negative_int, default=200, help="val images (default 200)")
    synth.add_argument("--size", type=_positive_int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.set_defaults(handler=_cmd_data_synth)

    check = data_sub.add_parser("check", help="validate a COCO-format instance-segmentation dataset")
    check.add_argument("annotations", help="COCO instances JSON")
    check.add_argument("--images", help="image directory (checks that every image file exists)")
    check.add_argument("--max-problems", type=_positive_int, default=200, help="stop listing after this many")
    check.set_defaults(handler=_cmd_data_check)

    sbd = data_sub.add_parser("sbd2coco", help="convert SBD's VOC instance masks (inst/*.mat) to COCO json")
    sbd.add_argument("--sbd", required=True, help="SBD's benchmark_RELEASE/dataset (inst/, cls/, img/, train.txt)")
    sbd.add_argument("--voc", help="VOCdevkit/VOC2012 (JPEGImages/, ImageSets/Main/); required for --split mnc")
    sbd.add_argument("--out", required=True, help="output directory (annotations/instances_{train,val}.json, images)")
    sbd.add_argument("--split", choices=("mnc", "sbd"), default="mnc",
                     help="mnc: VOC12 train/val images with SBD masks, 5623/5732 (default); sbd: SBD's train/val.txt")
    sbd.add_argument("--copy-images", action="store_true", help="copy the images used instead of linking the folder")
    sbd.set_defaults(handler=_cmd_data_sbd2coco)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mnc_bench.evaluation import evaluate, format_results, results_to_json

    results = evaluate(args.gt, args.pred, metric=args.metric, iou_type=args.iou_type, backend=args.backend)
    print(results_to_json(results) if args.json else format_results(results))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a results file: COCO AP/AR, VOC region AP, proposal recall")
    p.add_argument("--gt", required=True, metavar="ANNOTATIONS.json", help="COCO instances ground truth")
    p.add_argument("--pred", required=True, metavar="RESULTS.json",
                   help="COCO results list; for --metric proposals, {image_id, bbox, score} records")
    p.add_argument("--metric", choices=("coco", "voc_sds", "voc_mnc", "all", "proposals"), default="all",
                   help="all = coco + voc_sds + voc_mnc (default all)")
    p.add_argument("--iou-type", choices=("segm", "bbox"), default="segm",
                   help="IoU for the COCO metrics (default segm); VOC region AP always uses masks")
    p.add_argument("--backend", choices=("pycocotools", "faster_coco_eval"), default="pycocotools",
                   help="COCO evaluation code (default pycocotools; both give the same numbers)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every number (NaN: null)")
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from mnc_bench.training import format_metrics, train

    if args.local_rank is not None:  # torch.distributed.launch passes --local-rank; mmengine reads the env
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    result = train(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options, seed=args.seed,
                   deterministic=args.deterministic, resume=args.resume, resume_from=args.resume_from,
                   load_from=args.load_from, launcher=args.launcher)
    if result.metrics:
        print(format_metrics(result.metrics))
    print(f"work dir {result.work_dir}" + (f", last checkpoint {result.checkpoint}" if result.checkpoint else ""))
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    import os

    from mnc_bench.training import evaluate_checkpoint, format_metrics

    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    result = evaluate_checkpoint(args.config, args.checkpoint, out=args.out, work_dir=args.work_dir,
                                 cfg_options=args.cfg_options, launcher=args.launcher)
    print(format_metrics(result.metrics))
    if result.predictions is not None:
        print(f"predictions {result.predictions}")
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", help="logs and checkpoints (default work_dirs/<config name>)")
    p.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                   help="override config entries, e.g. data_root=/data/coco/ train_cfg.max_iters=100")
    p.add_argument("--launcher", choices=("none", "pytorch", "slurm"), default="none",
                   help="distributed launcher: pytorch under torchrun, slurm under srun (default none)")
    p.add_argument("--local-rank", "--local_rank", type=int, default=None, help=argparse.SUPPRESS)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model config (mmengine Runner; same data path for every model)")
    p.add_argument("config", help="model config, e.g. configs/mask_rcnn/mask_rcnn_shapes.py")
    _add_run_options(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's randomness.seed)")
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
    p = sub.add_parser("test", help="evaluate a checkpoint on the config's test split")
    p.add_argument("config", help="model config the checkpoint was trained with")
    p.add_argument("checkpoint", help="checkpoint file (.pth)")
    p.add_argument("--out", metavar="PRED.json", help="also write the predictions as a COCO results file")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_test)


def _cmd_bench(args: argparse.Namespace) -> int:
    from mnc_bench.bench import run_bench
    from mnc_bench.io import write_json

    figures = run_bench(args.sections, iters=args.iters)
    if args.json:
        write_json(args.json, figures, indent=2)
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="print benchmark figures (dataset generation, evaluation, training speed)")
    p.add_argument("sections", nargs="*", default=["data", "eval", "models"], metavar="SECTION",
                   help="any of data, eval, models (default: all)")
    p.add_argument("--iters", type=_positive_int, default=30, help="timed training iterations per model (default 30)")
    p.add_argument("--json", metavar="OUT.json", help="also write the figures to this file")
    p.set_defaults(handler=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnc-bench",
        description="Benchmark and ablation harness for instance segmentation: MNC, Mask R-CNN and PANet "
        "on one training and evaluation path.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a user error (bad config, dataset, argument) too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_env, _add_data, _add_demo, _add_evaluate, _add_train, _add_test, _add_bench):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
