"""vsr train: a few steps on tiny crops lower the loss, checkpoints resume exactly, data preparation,
distillation from a registered teacher."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
import torch
import torch.nn.functional as F
from PIL import Image

from vsr.cli import train as train_cli
from vsr.train import degrade as D
from vsr.train import data as TD
from vsr.train import loop as T
from vsr.train import losses as TL
from vsr.models import compact, load_model

CROP = 32  # HR crop side of the test runs, px (LR 8×8)
FAST = ["--batch", "4", "--crop", str(CROP), "--bank-size", "16", "--bank-refresh", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder of smooth, textured HR photos stand-ins."""
    folder = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    for i in range(3):
        small = torch.from_numpy(rng.random((3, 12, 12), dtype=np.float32))
        big = D.resize(small, (96, 96), "bicubic")
        Image.fromarray(D.to_uint8(big)).save(folder / f"img{i}.png")
    return folder


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def run(*argv: str) -> dict[str, float]:
    args = parse(*argv)
    return T.train(args, T.load_recipe(args))


def fixed_batch(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    imgs = TD.load_images(folder, CROP)
    bank = TD.PairBank(imgs, 8, CROP, seed=123, degrade_cfg=D.load_config())
    bank.fill(0, 1, progress=False)
    return bank.hr.float() / 127.5 - 1, bank.lr.float() / 127.5 - 1


def test_a_few_steps_lower_the_loss_and_export(images, tmp_path):
    out = tmp_path / "run"
    result = run("--data", str(images), "--out", str(out), "--steps", "40", "--lr", "0.003", "--ckpt-every", "20",
                 "--num-feat", "8", "--num-conv", "2", "--base", "nearest", *FAST)
    assert result["steps"] == 40
    assert (out / T.CHECKPOINT_NAME).is_file() and (out / T.EXPORT_NAME).is_file()
    hr, lr = fixed_batch(images)
    trained = load_model("compact", out / T.EXPORT_NAME)
    assert trained.config.num_feat == 8 and trained.config.num_conv == 2  # config travels in the metadata
    untrained = compact.Compact(trained.config).eval()  # = the bicubic base alone
    with torch.no_grad():
        assert F.l1_loss(trained(lr), hr) < F.l1_loss(untrained(lr), hr)


def test_resume_continues_exactly(images, tmp_path):
    common = ["--data", str(images), "--num-feat", "8", "--num-conv", "2", "--ckpt-every", "3", *FAST]
    run("--out", str(tmp_path / "straight"), "--steps", "6", *common)
    run("--out", str(tmp_path / "split"), "--steps", "6", "--max-minutes", "0", *common)  # stops after 1 step
    state = torch.load(tmp_path / "split" / T.CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 1
    result = run("--out", str(tmp_path / "split"), "--steps", "6", "--resume", *common)
    assert result["steps"] == 6
    a = torch.load(tmp_path / "straight" / T.CHECKPOINT_NAME, weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / T.CHECKPOINT_NAME, weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_resume_without_checkpoint_is_a_usage_error(images, tmp_path):
    from vsr.errors import UsageError

    with pytest.raises(UsageError):
        run("--data", str(images), "--out", str(tmp_path / "none"), "--resume", *FAST)


def test_bank_rebuild_matches_the_refreshed_bank(images):
    imgs = TD.load_images(images, CROP)
    live = TD.PairBank(imgs, 5, CROP, seed=1, degrade_cfg=D.load_config())
    live.fill(0, 2, progress=False)
    for step in range(4):
        live.refresh(step, 2)
    rebuilt = TD.PairBank(imgs, 5, CROP, seed=1, degrade_cfg=D.load_config())
    rebuilt.fill(4, 2, progress=False)
    assert torch.equal(live.hr, rebuilt.hr) and torch.equal(live.lr, rebuilt.lr)


def test_distillation_and_adversarial_paths(images, tmp_path):
    """Student learns toward a registered teacher (the Lanczos baseline here) with the GAN on."""
    out = tmp_path / "distil"
    run("--data", str(images), "--out", str(out), "--steps", "30", "--lr", "0.003", "--teacher", "lanczos",
        "--gt-weight", "0", "--adv-weight", "0.001", "--num-feat", "8", "--num-conv", "2", "--base", "nearest", *FAST)
    state = torch.load(out / T.CHECKPOINT_NAME, weights_only=True)
    assert "disc" in state
    _, lr = fixed_batch(images)
    student = load_model("compact", out / T.EXPORT_NAME)
    teacher = load_model("lanczos")
    untrained = compact.Compact(student.config).eval()
    with torch.no_grad():
        target = teacher(lr)
        assert F.l1_loss(student(lr), target) < F.l1_loss(untrained(lr), target)


def test_teacher_adcsr_tiny(images, tmp_path):
    """--teacher with the AdcSR architecture (random tiny weights): padded to its multiple, ×4 out."""
    from safetensors.torch import save_file

    from vsr.models import adcsr
    from vsr.weights import formats as WF

    weights = tmp_path / "adcsr-tiny.safetensors"
    torch.manual_seed(0)
    sd = adcsr.build_adcsr_tiny().state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(weights),
              metadata={"format": WF.FORMAT, "model": "adcsr-tiny", "config": json.dumps(adcsr.TINY.to_dict())})
    teacher = load_model("adcsr-tiny", weights)
    lr = torch.rand(2, 3, 10, 12) * 2 - 1  # not a multiple of 16: padded and cropped back
    assert TL.teacher_forward(teacher, lr).shape == (2, 3, 40, 48)
    result = run("--data", str(images), "--out", str(tmp_path / "t"), "--steps", "2", "--teacher", "adcsr-tiny",
                 "--teacher-weights", str(weights), "--num-feat", "8", "--num-conv", "2", *FAST)
    assert result["steps"] == 2 and np.isfinite(result["last_loss"])


def test_prepare_data_writes_the_splits(tmp_path):
    raw = tmp_path / "raw"
    (raw / "pkg").mkdir(parents=True)
    Image.fromarray(np.zeros((300, 203, 3), np.uint8)).save(raw / "pkg" / "a.jpg")
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(raw / "pkg" / "b.png")
    cfg = {"train": ["pkg/a.jpg"], "holdout": ["pkg/b.png"], "train_long_sides": [200, 100], "holdout_long_side": 64}
    assert TD.prepare_data(raw, tmp_path / "out", cfg) == (2, 1)
    sizes = sorted(Image.open(p).size for p in (tmp_path / "out" / "train").iterdir())
    assert sizes == [(68, 100), (132, 200)]  # long side as asked, cropped to multiples of 4
    assert Image.open(tmp_path / "out" / "holdout" / "b_64.png").size == (64, 44)


def test_tiers_and_init_fine_tune(images, tmp_path):
    """--init starts from a weights file (the parent of the --denoise sets), --tiers narrows the
    degradations; the tiers are recorded in the checkpoint's recipe (pass them again with --resume)."""
    parent = tmp_path / "parent.safetensors"
    torch.manual_seed(1)
    model = compact.Compact(compact.CompactConfig(num_feat=8, num_conv=2))
    torch.nn.init.normal_(model.body[-1].weight, std=0.01)
    compact.save(model, parent)
    out = tmp_path / "ft"
    run("--data", str(images), "--out", str(out), "--steps", "1", "--lr", "1e-12", "--lr-min", "1e-12", "--init", str(parent),
        "--tiers", "clean", "--num-feat", "8", "--num-conv", "2", *FAST)
    tuned = load_model("compact", out / T.EXPORT_NAME)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[k], v, rtol=1e-4, atol=1e-6)  # a near-zero step from the parent
    recipe = yaml.safe_load(torch.load(out / T.CHECKPOINT_NAME, weights_only=True)["recipe_yaml"])
    assert recipe["train"]["tiers"] == "clean"
    from vsr.errors import UsageError

    with pytest.raises(UsageError):  # a parent of another architecture
        run("--data", str(images), "--out", str(tmp_path / "bad"), "--steps", "1", "--init", str(parent), *FAST)


def test_pair_export_blends_the_two_sets(tmp_path):
    """vsr train --pair GRAIN DENOISE --export OUT: one file, S=0 is the grain set, S=1 the denoise set."""
    cfg = compact.CompactConfig(num_feat=8, num_conv=1)
    paths, models = [], []
    for i in range(2):
        torch.manual_seed(i)
        m = compact.Compact(cfg)
        torch.nn.init.normal_(m.body[-1].weight, std=0.01)
        paths.append(tmp_path / f"set{i}.safetensors")
        compact.save(m, paths[-1])
        models.append(m.eval())
    out = tmp_path / "pair.safetensors"
    assert train_cli.main(parse("--pair", str(paths[0]), str(paths[1]), "--export", str(out))) == 0
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        for s, ref in ((0.0, models[0]), (1.0, models[1])):
            torch.testing.assert_close(compact.load(out, torch.device("cpu"), torch.float32, denoise=s)(x), ref(x))
