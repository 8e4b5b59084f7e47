"""``vsr train``: train (or distil into) the compact ×4 model from HR photos with on-the-fly degradations.

Data: ``--prepare-data`` turns the photos that scripts/get_training_data.sh unpacked from the
package registries into ``train/`` and ``holdout/`` PNGs (DATA.md). Training keeps a bank of degraded
(HR, LR) pairs in memory and re-draws a few of them after every step, so degradation cost (PyAV
encodes included) stays a small part of a step. Every random draw comes from a generator seeded by
``(seed, slot, version)`` or ``(seed, step)``: a resumed run rebuilds exactly the bank it had.

Losses: pixel L1 + L1 between 2-D spectra (sharpness), optional hinge GAN with a small patch
discriminator, optional distillation: ``--teacher NAME`` adds L1 to the teacher's output on the same
LR input (ADC's compression-by-distillation, with any registered model as the teacher).
"""

from __future__ import annotations

import argparse
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from vsr import degrade as D
from vsr.errors import UsageError
from vsr.models import compact

CONFIG_PATH = Path(__file__).with_name("configs") / "train_compact.yaml"
CHECKPOINT_NAME = "last.pt"
EXPORT_NAME = "compact.safetensors"
SCALE = 4
PNG_COMPRESS_LEVEL = 1  # prepared PNGs: fast to write, still lossless


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vsr train``; unset values come from the recipe (--config)."""
    a = parser.add_argument
    a("--config", type=Path, default=CONFIG_PATH, help="training recipe YAML (default: the shipped one)")
    a("--prepare-data", action="store_true", help="build train/holdout PNGs from --raw-dir, then exit")
    a("--raw-dir", type=Path, help="unpacked packages (scripts/get_training_data.sh)")
    a("--data", type=Path, help="prepared data folder (train/*.png) or any folder of HR images")
    a("--out", type=Path, default=Path("runs/compact"), help="run folder: checkpoint and exported weights")
    a("--resume", action="store_true", help="continue from OUT/last.pt")
    a("--export", type=Path, help="also write the final safetensors here")
    a("--steps", type=int)
    a("--batch", type=int)
    a("--crop", type=int, help="HR crop side in px (multiple of 4)")
    a("--lr", type=float)
    a("--fft-weight", type=float)
    a("--adv-weight", type=float, help="adversarial loss weight; 0 disables the discriminator")
    a("--gt-weight", type=float, help="weight of the losses against ground truth")
    a("--teacher", help="registered model whose outputs the student matches (e.g. adcsr)")
    a("--teacher-weights", type=Path, help="weights of the teacher")
    a("--teacher-weight", type=float, help="weight of L1 to the teacher's output")
    a("--num-feat", type=int)
    a("--num-conv", type=int)
    a("--base", choices=["nearest", "bicubic"], help="residual base of the model (CompactConfig.base)")
    a("--bank-size", type=int)
    a("--bank-refresh", type=int)
    a("--ckpt-every", type=int)
    a("--seed", type=int)
    a("--degrade-config", type=Path, help="degradation parameters (default: configs/degrade.yaml)")
    a("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    a("--threads", type=int, default=1, help="torch CPU threads for the model (0: torch's default; 1 is often fastest for this small net)")
    a("--no-progress", action="store_true")


def load_recipe(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.config, encoding="utf-8") as f:
        recipe = yaml.safe_load(f)
    t = recipe["train"]
    for key in ("steps", "batch", "crop", "lr", "fft_weight", "adv_weight", "gt_weight", "teacher_weight",
                "bank_size", "bank_refresh", "ckpt_every", "seed"):
        if getattr(args, key, None) is not None:
            t[key] = getattr(args, key)
    for key in ("num_feat", "num_conv", "base"):
        if getattr(args, key, None) is not None:
            recipe["model"][key] = getattr(args, key)
    if t["crop"] % SCALE:
        raise UsageError(f"--crop must be a multiple of {SCALE}, got {t['crop']}")
    return recipe


# -------------------------------------------------------------------------------------------- data


def _reduce(img: "Any", long_side: int) -> "Any":
    from PIL import Image

    w, h = img.size
    if max(w, h) <= long_side:
        return img
    f = long_side / max(w, h)
    return img.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS, reducing_gap=3.0)


def prepare_data(raw_dir: Path, out_dir: Path, data_cfg: dict[str, Any]) -> tuple[int, int]:
    """Write ``out_dir/train/*.png`` (each photo at every long side) and ``out_dir/holdout/*.png``."""
    from PIL import Image

    counts = []
    for split in ("train", "holdout"):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        sides = data_cfg["train_long_sides"] if split == "train" else [data_cfg["holdout_long_side"]]
        n = 0
        for rel in data_cfg[split]:
            src = raw_dir / rel
            if not src.is_file():
                raise UsageError(f"{src} is missing: run scripts/get_training_data.sh {raw_dir} first")
            img = Image.open(src).convert("RGB")
            for side in sides:
                small = _reduce(img, side)
                w, h = small.size
                small = small.crop((0, 0, w - w % SCALE, h - h % SCALE))
                small.save(out_dir / split / f"{Path(rel).stem}_{side}.png", compress_level=PNG_COMPRESS_LEVEL)
                n += 1
        counts.append(n)
    return counts[0], counts[1]


def load_images(folder: Path, min_side: int) -> list[torch.Tensor]:
    """All images in ``folder`` as (3, H, W) uint8 tensors, skipping those smaller than ``min_side``."""
    from PIL import Image

    if not folder.is_dir():
        raise UsageError(f"no training data at {folder}: run scripts/get_training_data.sh, or pass --data DIR")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).contiguous() for p in files]
    images = [im for im in images if min(im.shape[-2:]) >= min_side]
    if not images:
        raise UsageError(f"no training images of at least {min_side} px in {folder}")
    return images


def _augment(x: torch.Tensor, code: int) -> torch.Tensor:
    """One of the 8 flips/rotations of the square, on the last two dims."""
    if code & 1:
        x = x.flip(-1)
    if code & 2:
        x = x.flip(-2)
    if code & 4:
        x = x.transpose(-1, -2)
    return x


@contextmanager
def single_thread() -> Iterator[None]:
    """Degradations are many small ops: with more threads they only spin (10× slower on a busy box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class PairBank:
    """Degraded (HR, LR) uint8 pairs; slot ``i`` at version ``v`` is a pure function of (seed, i, v)."""

    def __init__(self, images: list[torch.Tensor], size: int, crop: int, seed: int, degrade_cfg: dict[str, Any]) -> None:
        self.images, self.size, self.crop, self.seed, self.cfg = images, size, crop, seed, degrade_cfg
        self.hr = torch.empty((size, 3, crop, crop), dtype=torch.uint8)
        self.lr = torch.empty((size, 3, crop // SCALE, crop // SCALE), dtype=torch.uint8)

    def draw(self, slot: int, version: int) -> None:
        rng = np.random.default_rng([self.seed, slot, version])
        img = self.images[int(rng.integers(len(self.images)))]
        h, w = img.shape[-2:]
        y, x = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        hr = _augment(img[:, y : y + self.crop, x : x + self.crop], int(rng.integers(8))).float() / 255.0
        lr = D.degrade(hr, rng, self.cfg)
        self.hr[slot] = (hr * 255).round().to(torch.uint8)
        self.lr[slot] = (lr * 255).round().to(torch.uint8)

    def fill(self, step: int, refresh: int, progress: bool) -> None:
        """The bank as it stood after ``step`` steps: slot i holds its latest version."""
        from tqdm import tqdm

        drawn = step * refresh  # refreshes so far walk the slots round-robin
        with single_thread():
            for i in tqdm(range(self.size), desc="degrading", disable=not progress, leave=False):
                self.draw(i, (drawn - i - 1) // self.size + 1 if drawn > i else 0)

    def refresh(self, step: int, refresh: int) -> None:
        with single_thread():
            for j in range(step * refresh, (step + 1) * refresh):
                self.draw(j % self.size, j // self.size + 1)

    def batch(self, step: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([seed, 1_000_003, step])
        idx = torch.from_numpy(rng.choice(self.size, size=batch, replace=False))
        code = int(rng.integers(8))
        return _augment(self.hr[idx], code), _augment(self.lr[idx], code)


# ------------------------------------------------------------------------------------------ losses


class PatchDiscriminator(nn.Module):
    """Small spectral-norm patch GAN critic: one score per ~22×22 HR patch."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        chans = [3, width, width * 2, width * 4]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [sn(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        layers += [sn(nn.Conv2d(chans[-1], 1, 3, padding=1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fft_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between orthonormal 2-D spectra (real and imaginary parts)."""
    fa, fb = torch.fft.rfft2(a.float(), norm="ortho"), torch.fft.rfft2(b.float(), norm="ortho")
    return (torch.view_as_real(fa) - torch.view_as_real(fb)).abs().mean()


def teacher_forward(teacher: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """The teacher's ×4 output on ``lr`` in [-1, 1], padded to its ``multiple`` and cropped back."""
    m, (h, w) = teacher.multiple, lr.shape[-2:]
    x = F.pad(lr, (0, (-w) % m, 0, (-h) % m), mode="replicate")
    with torch.no_grad():
        y = teacher(x.to(next(iter(teacher.parameters()), x).dtype)).float()
    s = y.shape[-1] // x.shape[-1]
    if s != SCALE:
        raise UsageError(f"teacher scale is ×{s}; the student is ×{SCALE}")
    return y[..., : h * s, : w * s].clamp(-1, 1)


# ---------------------------------------------------------------------------------------- training


def _lr_at(step: int, t: dict[str, Any]) -> float:
    frac = min(step / max(t["steps"], 1), 1.0)
    return t["lr_min"] + 0.5 * (t["lr"] - t["lr_min"]) * (1 + math.cos(math.pi * frac))


def save_checkpoint(path: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer,
                    disc: nn.Module | None, opt_d: torch.optim.Optimizer | None, recipe: dict[str, Any]) -> None:
    state = {"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "recipe_yaml": yaml.safe_dump(recipe)}
    if disc is not None and opt_d is not None:
        state |= {"disc": disc.state_dict(), "opt_d": opt_d.state_dict()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a crash mid-save leaves the previous checkpoint


def train(args: argparse.Namespace, recipe: dict[str, Any]) -> dict[str, float]:
    """Run (or resume) training; returns the first and last logged loss and the steps done."""
    from tqdm import tqdm

    from vsr.engine import resolve_device

    t = recipe["train"]
    device = resolve_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data_dir = args.data or Path(recipe["data"]["dir"]) / "train"
    images = load_images(data_dir, t["crop"])
    degrade_cfg = D.load_config(args.degrade_config)
    config = compact.CompactConfig(**{k: recipe["model"][k] for k in ("num_feat", "num_conv", "base") if k in recipe["model"]})
    # channels_last: on CPU the conv backward runs about twice as fast in NHWC.
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, global RNG untouched
        torch.manual_seed(t["seed"])
        model = compact.Compact(config).to(device, memory_format=torch.channels_last)
        disc = PatchDiscriminator().to(device) if t["adv_weight"] > 0 else None
    opt = torch.optim.Adam(model.parameters(), lr=t["lr"], betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=t["lr"], betas=(0.9, 0.99)) if disc is not None else None
    teacher = None
    if args.teacher:
        from vsr.models import load_model

        teacher = load_model(args.teacher, args.teacher_weights, device)
    step = 0
    ckpt = out / CHECKPOINT_NAME
    if args.resume:
        if not ckpt.is_file():
            raise UsageError(f"--resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
        step = int(state["step"])
    progress = not args.no_progress
    bank = PairBank(images, min(t["bank_size"], max(t["batch"], t["bank_size"])), t["crop"], t["seed"], degrade_cfg)
    bank.fill(step, t["bank_refresh"], progress)
    started, losses = time.monotonic(), []
    bar = tqdm(total=t["steps"], initial=step, desc="train", disable=not progress, dynamic_ncols=True)
    model.train()
    while step < t["steps"]:
        hr, lr = bank.batch(step, t["batch"], t["seed"])
        hr = hr.to(device).float() / 127.5 - 1.0
        lr = (lr.to(device).float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, t)
        sr = model(lr)
        loss = t["gt_weight"] * (F.l1_loss(sr, hr) + t["fft_weight"] * fft_loss(sr, hr))
        if teacher is not None:
            target = teacher_forward(teacher, lr)
            loss = loss + t["teacher_weight"] * (F.l1_loss(sr, target) + t["fft_weight"] * fft_loss(sr, target))
        if disc is not None:
            loss = loss + t["adv_weight"] * -disc(sr).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None:
            d_loss = F.relu(1 - disc(hr)).mean() + F.relu(1 + disc(sr.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        losses.append(loss.item())
        bank.refresh(step, t["bank_refresh"])
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{_lr_at(step, t):.1e}")
        out_of_time = args.max_minutes is not None and time.monotonic() - started > args.max_minutes * 60
        if step % t["ckpt_every"] == 0 or step == t["steps"] or out_of_time:
            save_checkpoint(ckpt, step, model, opt, disc, opt_d, recipe)
            compact.save(model.eval(), out / EXPORT_NAME, {"vsr_train_step": str(step)})
            model.train()
        if out_of_time:
            break
    bar.close()
    model.eval()
    if args.export:
        compact.save(model, args.export, {"vsr_train_step": str(step)})
    head = losses[: min(len(losses), 20)] or [float("nan")]
    tail = losses[-min(len(losses), 20):] or [float("nan")]
    return {"first_loss": float(np.mean(head)), "last_loss": float(np.mean(tail)), "steps": float(step)}


def main(args: argparse.Namespace) -> int:
    recipe = load_recipe(args)
    if args.prepare_data:
        raw = args.raw_dir or Path(recipe["data"]["raw_dir"])
        dst = args.data or Path(recipe["data"]["dir"])
        n_train, n_hold = prepare_data(raw, dst, recipe["data"])
        print(f"prepared {n_train} training and {n_hold} held-out images in {dst}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    result = train(args, recipe)
    print(f"trained {int(result['steps'])} steps: loss {result['first_loss']:.4f} → {result['last_loss']:.4f}; "
          f"weights {args.out / EXPORT_NAME}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m vsr.train", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
