"""Training and distillation of the compact model (filled in by the compact-model issue)."""

from __future__ import annotations

import argparse

from vsr.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vsr train``."""


def main(args: argparse.Namespace) -> int:
    raise UsageError("vsr train is not implemented yet")
