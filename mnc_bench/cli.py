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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnc-bench",
        description="Benchmark and ablation harness for instance segmentation: MNC, Mask R-CNN and PANet "
        "on one training and evaluation path.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_env, _add_data, _add_demo):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
