"""``vsr probe``: what a media file holds, and what ``vsr run`` will decide from it."""

from __future__ import annotations

import argparse
from pathlib import Path

from vsr.media.probe import format_table, probe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    info = probe(args.input)
    print(info.to_json() if args.json else format_table(info))
    return 0
