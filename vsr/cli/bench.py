"""``vsr bench``: a model's speed on a device against the official-style baseline (vsr.bench.run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vsr.bench.run import KEYS, format_table, run_bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="compact", help="model name or auto (the model --weights holds; default compact)")
    p.add_argument("--weights", help="weights file for the model (default: cache; random weights if none)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--tile", type=int, default=None, help="tile size in LR px (default: the engine's)")
    p.add_argument("--batch", type=int, default=None, help="tiles per forward (default: the engine's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the chosen setting's model")
    p.add_argument("--input", type=Path, help="video to run (default: a generated clip, sized per device)")
    p.add_argument("--frames", type=int, help="frames of the generated clip")
    p.add_argument("--size", help="WxH of the generated clip")
    p.add_argument("--repeats", type=int, default=2, help="timed passes over the clip per setting (best is kept)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as vsr run: all cores when idle, else all but one)")
    p.add_argument("--no-official", dest="official", action="store_false",
                   help="skip the official-style baseline (speedup_vs_official is then null)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")


def main(args: argparse.Namespace) -> int:
    results, info = run_bench(args)
    if args.json:
        print(json.dumps([{**{k: r.row[k] for k in KEYS}, "note": r.note, "stages_s_per_frame": r.stages}
                          for r in results], indent=1))
    else:
        print(format_table(results, info))
    return 0
