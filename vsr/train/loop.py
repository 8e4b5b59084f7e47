"""Training (or distilling into) the compact ×4 model: the recipe, the optimisation loop, checkpoints.

Losses: pixel L1 + L1 between 2-D spectra (sharpness), optional hinge GAN with a small patch
discriminator, optional distillation: a teacher adds L1 to its output on the same LR input (ADC's
compression-by-distillation, with any registered model as the teacher). Every random draw comes from
a generator seeded by ``(seed, slot, version)`` or ``(seed, step)``: a resumed run is exact.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from vsr.errors import UsageError
from vsr.models import compact, load_model
from vsr.train import degrade as D
from vsr.train.data import SCALE, PairBank, load_images
from vsr.train.losses import PatchDiscriminator, fft_loss, teacher_forward
from vsr.upscale.device import resolve_device

CONFIG_PATH = Path(__file__).parent.parent / "configs" / "train_compact.yaml"
CHECKPOINT_NAME = "last.pt"
EXPORT_NAME = compact.EXPORT_NAME


def load_recipe(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.config, encoding="utf-8") as f:
        recipe = yaml.safe_load(f)
    t = recipe["train"]
    for key in ("steps", "batch", "crop", "lr", "lr_min", "tiers", "fft_weight", "adv_weight", "gt_weight", "teacher_weight",
                "bank_size", "bank_refresh", "ckpt_every", "seed"):
        if getattr(args, key, None) is not None:
            t[key] = getattr(args, key)
    for key in ("num_feat", "num_conv", "base"):
        if getattr(args, key, None) is not None:
            recipe["model"][key] = getattr(args, key)
    if t["crop"] % SCALE:
        raise UsageError(f"--crop must be a multiple of {SCALE}, got {t['crop']}")
    return recipe


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
    t = recipe["train"]
    device = resolve_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data_dir = args.data or Path(recipe["data"]["dir"]) / "train"
    images = load_images(data_dir, t["crop"])
    degrade_cfg = D.load_config(args.degrade_config)
    if t.get("tiers"):  # e.g. "clean,mild": train on some strength tiers only (the --denoise sets)
        degrade_cfg = D.select_tiers(degrade_cfg, D.parse_tiers(t["tiers"]))
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
        teacher = load_model(args.teacher, args.teacher_weights, device)
    step = 0
    ckpt = out / CHECKPOINT_NAME
    if getattr(args, "init", None) is not None and not args.resume:  # fine-tune from a weights file
        parent = compact.load(args.init, device, torch.float32)
        if parent.config != config:
            raise UsageError(f"--init {args.init} is a {parent.config}, the recipe asks for {config}")
        model.load_state_dict(parent.state_dict())
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
