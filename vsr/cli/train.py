"""``vsr train``: train or distil the compact ×4 model (vsr.train; recipe in configs/train_compact.yaml)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vsr.errors import UsageError
from vsr.models import compact
from vsr.train import loop
from vsr.train.data import prepare_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vsr train``; unset values come from the recipe (--config)."""
    a = parser.add_argument
    a("--config", type=Path, default=loop.CONFIG_PATH, help="training recipe YAML (default: the shipped one)")
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
    a("--lr-min", type=float, help="learning rate at the end of the cosine")
    a("--init", type=Path, help="start from these compact weights (fine-tuning) instead of random ones")
    a("--tiers", help="degradation tiers and weights, e.g. clean,mild or clean:1,heavy:2 (default: all, "
                      "as weighted in degrade.yaml)")
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
    a("--pair", nargs=2, type=Path, metavar=("GRAIN", "DENOISE"),
      help="write the --denoise pair of these two weight files (fine-tuned from one parent) to --export, then exit")
    a("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    a("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    a("--threads", type=int, default=1, help="torch CPU threads for the model (0: torch's default; 1 is often fastest for this small net)")
    a("--no-progress", action="store_true")




def main(args: argparse.Namespace) -> int:
    recipe = loop.load_recipe(args)
    if args.prepare_data:
        raw = args.raw_dir or Path(recipe["data"]["raw_dir"])
        dst = args.data or Path(recipe["data"]["dir"])
        n_train, n_hold = prepare_data(raw, dst, recipe["data"])
        print(f"prepared {n_train} training and {n_hold} held-out images in {dst}")
        return 0
    if args.pair:
        if not args.export:
            raise UsageError("--pair needs --export FILE (where to write the pair)")
        grain, denoise = (compact.load(p, torch.device("cpu"), torch.float32) for p in args.pair)
        compact.save_pair(grain, denoise, args.export, {"vsr_pair_of": f"{args.pair[0].name},{args.pair[1].name}"})
        print(f"wrote the --denoise pair {args.pair[0]} (S=0) + {args.pair[1]} (S=1) to {args.export}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    result = loop.train(args, recipe)
    print(f"trained {int(result['steps'])} steps: loss {result['first_loss']:.4f} → {result['last_loss']:.4f}; "
          f"weights {args.out / loop.EXPORT_NAME}")
    return 0
