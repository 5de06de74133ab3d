"""GPU tier, half that needs mmcv built with CUDA kernels: mmcv's ops on CUDA against the CPU, every shapes
config for 5 iterations and a test pass on the GPU in fp32 and with --amp, a --deterministic training, and
`bench models --device cuda`.

Run with `make test-gpu` (about 20 short trainings). Skipped, saying why, without a GPU or without CUDA
kernels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmcv.ops")
from mnc_bench.cli import main  # noqa: E402
from mnc_bench.gpu import mmcv_ops_on_cuda_problem  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIGS = sorted(REPO.glob("configs/*/*_shapes*.py"))


def _skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU: torch.cuda.is_available() is False"
    return mmcv_ops_on_cuda_problem("cuda")


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def test_mmcv_roi_align_and_nms_match_the_cpu():
    from mmcv.ops import RoIAlign, nms

    torch.manual_seed(0)
    features = torch.randn(2, 16, 32, 32)
    rois = torch.tensor([[0, 1.5, 2.0, 20.3, 25.1], [1, 8.0, 3.5, 30.0, 12.2], [1, -4.0, -2.0, 6.0, 9.0]])
    align = RoIAlign(output_size=7, spatial_scale=0.5, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(align(features.cuda(), rois.cuda()).cpu(), align(features, rois),
                               rtol=1e-4, atol=1e-5)
    boxes = torch.rand(200, 2) * 100
    boxes = torch.cat((boxes, boxes + 5 + torch.rand(200, 2) * 40), dim=1)
    scores = torch.rand(200)
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_cuda = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert torch.equal(keep_cuda.cpu(), keep_cpu)


def _options(root: Path) -> list[str]:
    return [f"data_root={root}/", "train_cfg.max_iters=5", "train_cfg.val_interval=5",
            "train_cfg.val_begin=100", "train_dataloader.batch_size=2", "default_hooks.checkpoint.interval=5",
            "default_hooks.logger.interval=1"]


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
@pytest.mark.parametrize("config", SHAPES_CONFIGS, ids=lambda path: path.stem)
def test_five_iterations_and_a_test_pass_on_the_gpu(config, amp, shapes_dataset, tmp_path, capsys):
    work = tmp_path / "work"
    precision = ["--amp"] if amp else []
    torch.cuda.reset_peak_memory_stats()
    code = main(["train", str(config), "--work-dir", str(work), *precision,
                 "--cfg-options", *_options(shapes_dataset)])
    assert code == 0 and (work / "iter_5.pth").is_file(), capsys.readouterr().err[-2000:]
    assert torch.cuda.max_memory_allocated() > 0  # the model trained on the GPU
    checkpoint = torch.load(work / "iter_5.pth", map_location="cpu", weights_only=False)
    assert ("loss_scaler" in checkpoint["optimizer"]) == amp  # AmpOptimWrapper's GradScaler state
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    out = tmp_path / "pred.json"
    code = main(["test", str(config), str(work / "iter_5.pth"), "--out", str(out), "--work-dir", str(work),
                 *precision, "--cfg-options", *_options(shapes_dataset)])
    printed = capsys.readouterr().out
    assert code == 0 and f"predictions {out}" in printed
    assert isinstance(json.loads(out.read_text()), list)


@pytest.mark.parametrize("config", [REPO / "configs/mnc/mnc_3stage_shapes.py",
                                    REPO / "configs/mask_rcnn/mask_rcnn_shapes.py"],
                         ids=lambda path: path.stem)
def test_deterministic_training_on_the_gpu_runs(config, shapes_dataset, tmp_path, capsys):
    # grid_sample's CUDA backward (MNC) has no deterministic kernel: --deterministic warns there, not fails.
    enabled_before = torch.are_deterministic_algorithms_enabled()
    try:
        code = main(["train", str(config), "--work-dir", str(tmp_path), "--deterministic", "--seed", "0",
                     "--cfg-options", *_options(shapes_dataset)])
    finally:
        torch.use_deterministic_algorithms(enabled_before)
    err = capsys.readouterr().err
    assert code == 0 and (tmp_path / "iter_5.pth").is_file(), err[-2000:]
    assert "--deterministic on CUDA" in err


def test_bench_models_on_the_gpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "models", "--device", "cuda", "--repeats", "3", "--train-iters", "2",
                 "--warmup", "1", "--json", str(out)])
    assert code == 0, capsys.readouterr().err[-2000:]
    figures = json.loads(out.read_text())
    assert figures["settings"]["device"] == "cuda" and figures["machine"]["gpu"]
    for record in figures["models"]:  # every default model measured on the GPU, inference and training
        for key in ("infer_ms_median", "train_s_per_iter", "train_gflops_per_iter"):
            assert math.isfinite(record[key]) and record[key] > 0, (record["model"], key)


def test_random_states_resume_from_a_checkpoint_loaded_onto_the_gpu(tmp_path):
    # mmengine's resume maps the checkpoint onto the training device; the states still restore, CUDA's too.
    from mnc_bench.random_state import capture_random_state, restore_random_state

    torch.cuda.manual_seed(0)
    torch.randn(4, device="cuda")  # CUDA initialised: its state is captured
    torch.save(capture_random_state(), tmp_path / "state.pth")
    expected = (torch.rand(3).tolist(), torch.rand(3, device="cuda").tolist())
    restore_random_state(torch.load(tmp_path / "state.pth", map_location="cuda", weights_only=True))
    assert (torch.rand(3).tolist(), torch.rand(3, device="cuda").tolist()) == expected
