"""Weights: cache directory, download, safe loading, conversion (filled in by the AdcSR issue)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vsr.errors import UsageError


def cache_dir() -> Path:
    """``$VSR_HOME`` or ``~/.cache/vsr``."""
    return Path(os.environ.get("VSR_HOME") or Path.home() / ".cache" / "vsr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vsr weights``."""
    parser.add_argument("action", choices=["list", "download", "convert", "verify"])
    parser.add_argument("rest", nargs="*")


def main(args: argparse.Namespace) -> int:
    raise UsageError("vsr weights is not implemented yet")
