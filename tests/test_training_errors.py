"""Bad configs, datasets and arguments are one-line UserErrors, raised before any model is built."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

pytest.importorskip("mmcv.ops")

from mnc_bench import preflight  # noqa: E402
from mnc_bench.cli import main  # noqa: E402
from mnc_bench.config_loading import load_config  # noqa: E402
from mnc_bench.data.synthetic import build_atomically  # noqa: E402
from mnc_bench.errors import ConfigError, UserError  # noqa: E402
from mnc_bench.preflight import (  # noqa: E402
    check_pretrained_weights,
    ensure_generated,
    prepare_datasets,
    shapes_writer,
)
from mnc_bench.training import train  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MASK_RCNN = CONFIGS / "mask_rcnn" / "mask_rcnn_shapes.py"
COCO_R50 = CONFIGS / "mask_rcnn" / "mask_rcnn_r50_fpn_coco.py"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    return errors[0]


def test_missing_config(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.py")]) == 2
    assert _one_line_error(capsys) == f"error: config {tmp_path / 'nope.py'} not found"


def test_config_with_a_syntax_error(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("model = dict(type='MaskRCNN'\n")
    assert main(["train", str(bad)]) == 2
    assert "SyntaxError" in _one_line_error(capsys)


def test_a_config_that_does_not_run_is_a_user_error_and_a_bug_in_reading_keeps_its_traceback(tmp_path,
                                                                                            monkeypatch):
    undefined = tmp_path / "undefined.py"
    undefined.write_text("model = dict(type=MaskRCNN)\n")  # a name the config never defines
    with pytest.raises(UserError, match=r"undefined\.py: NameError: name 'MaskRCNN' is not defined"):
        load_config(undefined)
    missing_base = tmp_path / "missing_base.py"
    missing_base.write_text("_base_ = ['./nope.py']\n")
    with pytest.raises(UserError, match=r"missing_base\.py: \w*Error"):
        load_config(missing_base)

    from mmengine.config import Config

    def reading_bug(*args, **kwargs):
        raise RuntimeError("a bug while reading configs")

    monkeypatch.setattr(Config, "fromfile", staticmethod(reading_bug))
    with pytest.raises(RuntimeError, match="a bug while reading configs"):
        load_config(MASK_RCNN)


def test_unknown_model_type_is_named(tmp_path, shapes_dataset, capsys):
    bad = tmp_path / "bad_type.py"
    bad.write_text(f"_base_ = '{MASK_RCNN}'\nmodel = dict(type='MaskRCNNN')\n")
    assert main(["train", str(bad), "--cfg-options", f"data_root={shapes_dataset}"]) == 2
    assert "MaskRCNNN" in _one_line_error(capsys)


@pytest.mark.parametrize("key, value", [("model.roi_head.bbox_head.type", "NoSuchHead"),
                                        ("model.roi_head.bbox_head.loss_cls.type", "NoSuchLoss"),
                                        ("model.train_cfg.rcnn.assigner.type", "NoSuchAssigner")])
def test_unknown_nested_type_is_named_with_its_key(key, value, shapes_dataset, capsys):
    assert main(["train", str(MASK_RCNN), "--cfg-options", f"data_root={shapes_dataset}",
                 f"{key}={value}"]) == 2
    assert _one_line_error(capsys) == f"error: {key}: unknown type {value!r} (not in mmdet's registries)"


def test_every_type_of_every_zoo_config_passes_the_type_check():
    """No false alarm: the nested types of every shipped config (heads, losses, assigners, mmcv ops such as
    RoIAlign and nms, initialisers) are all found."""
    from mmengine.registry import DefaultScope

    from mnc_bench.config_loading import load_config
    from mnc_bench.preflight import check_types
    from mnc_bench.registration import register_all

    register_all()
    configs = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*/*.py")
                     if p.parent.name != "_base_")
    assert len(configs) > 25
    with DefaultScope.overwrite_default_scope("mmdet"):
        for config in configs:
            check_types(load_config(config).model, "model")


def test_malformed_cfg_option(capsys):
    # Refused while parsing the command line (argparse: usage, then one error line); from Python by train().
    with pytest.raises(SystemExit) as info:
        main(["train", str(MASK_RCNN), "--cfg-options", "train_cfg.max_iters"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and "Traceback" not in "\n".join(err) and "expected KEY=VALUE" in err[-1]
    with pytest.raises(UserError, match="--cfg-options: expected KEY=VALUE, got 'train_cfg.max_iters'"):
        train(MASK_RCNN, cfg_options=["train_cfg.max_iters"])


def test_bad_launcher_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", str(MASK_RCNN), "--launcher", "mpi"])
    assert info.value.code == 2 and "--launcher" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--resume", "--load-from", "a.pth"],
                                   ["--resume", "--resume-from", "a.pth"],
                                   ["--resume-from", "a.pth", "--load-from", "b.pth"]])
def test_resume_and_load_flags_are_mutually_exclusive(flags, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", str(MASK_RCNN), *flags])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_resume_and_load_from_together_are_refused_from_python(tmp_path):
    with pytest.raises(UserError,
                       match="at most one of resume, resume_from and load_from, got resume and load_from"):
        train(MASK_RCNN, resume=True, load_from=tmp_path / "a.pth", work_dir=tmp_path)


# Values mmengine or torch would reject only while the Runner builds its loops and loaders (after the model):
# named in one line before anything is built.
@pytest.mark.parametrize(("config", "option", "expected"), [
    (COCO_R50, "train_cfg.max_iters=1", "train_cfg.max_iters: EpochBasedTrainLoop takes no 'max_iters' "
                                        "(it takes max_epochs, val_begin, val_interval, dynamic_intervals)"),
    (COCO_R50, "train_dataloader.num_workers=0", "train_dataloader.persistent_workers: needs "
                                                 "train_dataloader.num_workers > 0 (it is 0)"),
    (MASK_RCNN, "train_cfg.max_epochs=2", "train_cfg.max_epochs: IterBasedTrainLoop takes no 'max_epochs'"),
    (MASK_RCNN, "train_cfg.val_interval=0", "train_cfg.val_interval: must be a positive integer, got 0"),
    (MASK_RCNN, "train_cfg.max_iters=2.5", "train_cfg.max_iters: must be a positive integer, got 2.5"),
    (MASK_RCNN, "train_cfg.type=EpochLoop", "train_cfg.type: unknown loop type 'EpochLoop'"),
    (MASK_RCNN, "val_cfg.fp32=True", "val_cfg.fp32: ValLoop takes no 'fp32' (it takes fp16)"),
    (MASK_RCNN, "val_cfg=None", "val_cfg: needed with val_dataloader and val_evaluator"),
    (MASK_RCNN, "train_dataloader.batch_size=0", "train_dataloader.batch_size: must be a positive integer, "
                                                 "got 0"),
    (MASK_RCNN, "train_dataloader.num_workers=-1", "train_dataloader.num_workers: must be a non-negative "
                                                   "integer"),
    (MASK_RCNN, "val_dataloader.prefetch_factor=2", "val_dataloader.prefetch_factor: needs "
                                                    "val_dataloader.num_workers > 0"),
    (MASK_RCNN, "train_dataloader.shuffle=True", "train_dataloader.shuffle: torch's DataLoader does not take "
                                                 "it with a batch_sampler"),
    (MASK_RCNN, "val_dataloader.shuffle=True", "val_dataloader.shuffle: torch's DataLoader does not take it "
                                               "with a sampler; set val_dataloader.sampler.shuffle instead"),
    (MASK_RCNN, "train_dataloader.num_worker=2", "train_dataloader.num_worker: not an argument of torch's "
                                                 "DataLoader"),
], ids=lambda value: value if isinstance(value, str) and "=" in value else None)
def test_values_the_runner_would_reject_are_named_before_building(config, option, expected, tmp_path, capsys):
    # data_root exists and is empty: were the value not caught, the dataset check would fail instead.
    assert main(["train", str(config), "--work-dir", str(tmp_path / "w"), "--cfg-options",
                 f"data_root={tmp_path}", option]) == 2
    assert _one_line_error(capsys).startswith(f"error: {expected}")


def test_a_bug_inside_a_model_keeps_its_traceback(monkeypatch, shapes_dataset, tmp_path):
    from mmdet.models.detectors import MaskRCNN

    def broken_init(self, *args, **kwargs):
        raise KeyError("deliberate bug")

    monkeypatch.setattr(MaskRCNN, "__init__", broken_init)
    with pytest.raises(KeyError) as info:
        main(["train", str(MASK_RCNN), "--work-dir", str(tmp_path), "--cfg-options",
              f"data_root={shapes_dataset}"])
    assert not isinstance(info.value, UserError)
    text = "".join(traceback.format_exception(info.value))
    assert "in broken_init" in text and "deliberate bug" in text


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        main(["--debug", "train", str(tmp_path / "nope.py")])
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "--debug", "train",
                             str(tmp_path / "nope.py")], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert (result.stderr.strip().splitlines()[-1]
            == f"mnc_bench.errors.UserError: config {tmp_path / 'nope.py'} not found")


def test_missing_dataset_names_the_expected_layout(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()  # exists, so it is not generated: it must hold a dataset
    assert main(["train", str(MASK_RCNN), "--cfg-options", f"data_root={empty}"]) == 2
    message = _one_line_error(capsys)
    assert f"{empty}/annotations/instances_train.json not found" in message
    assert "expected data_root/annotations/instances_{train,val}.json" in message


def test_malformed_annotations_are_refused_before_the_model_is_built(tmp_path, shapes_dataset, capsys):
    root = tmp_path / "damaged"
    shutil.copytree(shapes_dataset, root)
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"] = [0, 0, -5, 3]
    ann.write_text(json.dumps(data))
    assert main(["train", str(MASK_RCNN), "--cfg-options", f"data_root={root}"]) == 2
    message = _one_line_error(capsys)
    assert "instances_train.json" in message and "non-positive width or height" in message


def test_invalid_json_annotations(tmp_path, shapes_dataset):
    root = tmp_path / "broken"
    shutil.copytree(shapes_dataset, root)
    (root / "annotations" / "instances_val.json").write_text("{ not json")
    with pytest.raises(UserError, match="invalid JSON"):
        train(MASK_RCNN, cfg_options={"data_root": str(root)}, work_dir=tmp_path / "w")


def test_cli_error_is_one_line_in_a_fresh_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mnc_bench.cli", "train", str(MASK_RCNN), "--cfg-options",
                             f"data_root={tmp_path}"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: train_dataloader: annotation file")


def test_data_root_override_reaches_every_derived_path(tmp_path):
    cfg = load_config(MASK_RCNN, {"data_root": str(tmp_path / "elsewhere")})
    root = str(tmp_path / "elsewhere")
    assert cfg.train_dataloader.dataset.data_root == root
    assert cfg.val_dataloader.dataset.data_root == cfg.test_dataloader.dataset.data_root == root
    assert cfg.val_evaluator.ann_file == f"{root}/annotations/instances_val.json"
    assert cfg.test_evaluator.ann_file == f"{root}/annotations/instances_val.json"


def test_model_normalisation_must_match_the_dataset(capsys):
    assert main(["train", str(MASK_RCNN), "--cfg-options",
                 "model.data_preprocessor.pad_size_divisor=64"]) == 2
    assert "model.data_preprocessor differs from the dataset's" in _one_line_error(capsys)


def test_shapes_are_generated_when_their_root_is_missing(tmp_path):
    root = tmp_path / "made" / "shapes"
    cfg = load_config(MASK_RCNN, {"data_root": str(root), "synthetic_shapes.num_train": 3,
                                  "synthetic_shapes.num_val": 2})
    prepare_datasets(cfg, ["train_dataloader", "val_dataloader"])
    train_ann = json.loads((root / "annotations" / "instances_train.json").read_text())
    assert len(train_ann["images"]) == 3 and len(list((root / "val").glob("*.png"))) == 2


def test_shapes_are_written_once_and_a_partial_folder_again(tmp_path, capsys):
    root = tmp_path / "shapes"
    write = shapes_writer(dict(num_train=2, num_val=1, image_size=64))
    assert ensure_generated(root, write)
    train_ann = root / "annotations" / "instances_train.json"
    written = train_ann.stat().st_mtime_ns
    # complete: reused
    assert not ensure_generated(root, write) and train_ann.stat().st_mtime_ns == written
    (root / "annotations" / "instances_val.json").unlink()  # partial: written again
    assert ensure_generated(root, write) and (root / "annotations" / "instances_val.json").is_file()
    assert len(json.loads(train_ann.read_text())["images"]) == 2
    # A folder that is not (part of) a shapes dataset is never written into; the dataset check reports it.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert not ensure_generated(foreign, write)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("launcher, variable", [("slurm", "SLURM_PROCID"), ("pytorch", "RANK")])
def test_only_rank_zero_writes_the_shapes_and_the_others_wait(tmp_path, monkeypatch, launcher, variable):
    # Under --launcher slurm, RANK is set only once mmengine joins the process group, after the datasets are
    # prepared: the rank comes from the launcher's own variable.
    monkeypatch.setenv(variable, "1")
    monkeypatch.setattr(preflight, "GENERATED_WAIT_S", 0)
    root = tmp_path / "shapes"
    cfg = load_config(MASK_RCNN, {"data_root": str(root), "synthetic_shapes.num_train": 2,
                                  "synthetic_shapes.num_val": 1, "launcher": launcher})
    waited = f"waited 0 min for rank 0 to write the synthetic shapes dataset to {root}"
    with pytest.raises(UserError, match=re.escape(waited)):
        prepare_datasets(cfg, ["train_dataloader"])
    assert not root.exists()


def test_a_dataset_written_meanwhile_by_another_process_is_kept(tmp_path):
    out = tmp_path / "shapes"

    def build(staging: Path) -> list[str]:
        (staging / "mine.txt").write_text("late copy")
        out.mkdir()  # another process renames its complete copy into place first
        (out / "theirs.txt").write_text("first copy")
        return ["built"]

    assert build_atomically(out, build) == f"kept {out}, written meanwhile by another process"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]  # no staging folder left
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]


def test_unknown_synthetic_shapes_setting_is_named(tmp_path, capsys):
    assert main(["train", str(MASK_RCNN), "--cfg-options", f"data_root={tmp_path / 'new'}",
                 "synthetic_shapes.num_test=3"]) == 2
    assert _one_line_error(capsys).startswith(
        "error: synthetic_shapes.num_test: unknown setting (it takes num_train")


def test_pretrained_weights_are_local_files_only(tmp_path):
    with pytest.raises(UserError, match=r"pretrained weights .*missing\.pth not found .*backbone_checkpoint"):
        check_pretrained_weights(
            load_config(COCO_R50, {"backbone_checkpoint": str(tmp_path / "missing.pth")}))
    with pytest.raises(UserError, match="would be downloaded"):
        check_pretrained_weights(load_config(COCO_R50, {"backbone_checkpoint": "torchvision://resnet50"}))
    weights = tmp_path / "r50.pth"
    weights.write_bytes(b"not read here")
    cfg = load_config(COCO_R50, {"backbone_checkpoint": str(weights)})
    check_pretrained_weights(cfg)
    assert cfg.model.backbone.init_cfg.checkpoint == str(weights)
    scratch = load_config(COCO_R50, {"backbone_checkpoint": None})
    check_pretrained_weights(scratch)
    assert scratch.model.backbone.init_cfg is None


@pytest.mark.parametrize("launcher, message", [
    ("slurm", "--launcher slurm needs GPUs; on CPU, start the processes with torchrun and "
              "--launcher pytorch"),
    ("pytorch", "--launcher pytorch needs RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment"),
])
def test_a_distributed_launch_that_cannot_start_on_cpu_is_a_user_error(
        launcher, message, shapes_dataset, tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("GPUs present: the launcher would start for real")
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(UserError, match=re.escape(message)):
        train(MASK_RCNN, launcher=launcher, work_dir=tmp_path, cfg_options={"data_root": str(shapes_dataset)})


def test_synthetic_clips_are_generated_and_an_unknown_setting_is_named(tmp_path):
    video_config = CONFIGS / "video" / "video_mnc_shapes_video.py"
    root = tmp_path / "clips"
    settings = {"data_root": str(root), "synthetic_videos.num_train": 1, "synthetic_videos.num_val": 1,
                "synthetic_videos.max_frames": 2, "synthetic_videos.min_frames": 2}
    with pytest.raises(ConfigError, match=r"^synthetic_videos\.num_test: unknown setting \(it takes num_tr"):
        prepare_datasets(load_config(video_config, {**settings, "synthetic_videos.num_test": 1}),
                         ["train_dataloader"])
    assert not root.exists()
    prepare_datasets(load_config(video_config, settings), ["train_dataloader", "val_dataloader"])
    official = json.loads((root / "annotations" / "ytvis_train.json").read_text())
    assert len(official["videos"]) == 1 and len(official["videos"][0]["file_names"]) == 2
