"""Command-line front end: ``vsr run | farm | probe | weights | bench | train | export``. Thin: parsing,
messages, exit codes; the work is the library's (vsr.jobs, vsr.models, vsr.weights, vsr.bench,
vsr.train).

Errors: one line on stderr, ``vsr: error: ...``; an option whose value came from the command line is
named by its flag (``--crf 99: ...``), one from a file or a ``VSR_*`` variable by its key and source;
options the library quotes in backticks (`overwrite`) become flags (--overwrite).
Exit codes: VsrError.exit_code (2 usage/input, 3 weights, 1 runtime), 128 + N after signal N.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import traceback
from types import FrameType

from vsr.cli import bench, export, probe, run, train, weights
from vsr.config import OPTIONS
from vsr.errors import COMMAND_LINE, Interrupted, OptionError, VsrError
from vsr.version import __version__

log = logging.getLogger("vsr")

HANDLED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: the terminal or ssh session closed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsr", description="Streaming video super-resolution (AdcSR).")
    parser.add_argument("--version", action="version", version=f"vsr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    run.run_parser(sub)
    run.farm_parser(sub)
    probe.add_arguments(sub.add_parser("probe", help="show the streams of a media file"))
    weights.add_arguments(sub.add_parser("weights", help="list, inspect, download, convert and verify model weights"))
    bench.add_arguments(sub.add_parser("bench", help="measure a model's speed against the official-style baseline"))
    train.add_arguments(sub.add_parser("train", help="train or distil the compact model"))
    export.add_arguments(sub.add_parser("export", help="write a model as ONNX (onnxruntime, vs-mlrt, TensorRT)"))
    for p in sub.choices.values():  # `vsr run ... --debug` works as well as `vsr --debug run ...`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


COMMANDS = {"run": run.cmd_run, "farm": run.cmd_farm, "probe": probe.main, "weights": weights.main,
            "bench": bench.main, "train": train.main, "export": export.main}


def install_signals() -> tuple[dict, dict]:
    """The first SIGINT/SIGTERM/SIGHUP raises Interrupted in the main thread (cleanup runs); a second
    exits at once. Returns the previous handlers and the state ({"hit": True} once a signal came)."""
    state = {"hit": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        if state["hit"]:
            os._exit(128 + signum)
        state["hit"] = True
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}", signum)

    previous = {}
    for name in HANDLED_SIGNALS:
        if hasattr(signal, name):  # Windows delivers Ctrl-C only
            signum = getattr(signal, name)
            previous[signum] = signal.signal(signum, handler)
    return previous, state


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def message(e: VsrError) -> str:
    """The error line, with options named by their flags: an OptionError whose value came from the
    command line as ``--crf 99: ...``, and every option the library quotes as `name` as ``--name``."""
    if isinstance(e, OptionError) and e.source == COMMAND_LINE:
        text = f"{flag(e.option)} {e.value}: {e.why}"
        text = f"{e.path}: {text}" if e.path else text
    else:
        text = str(e)
    return flags_in(text)


class FlagFormatter(logging.Formatter):
    """Log lines name options as flags, as error lines do."""

    def format(self, record: logging.LogRecord) -> str:
        return flags_in(super().format(record))


def flags_in(text: str) -> str:
    """Options the library quotes in backticks (`overwrite`) as their flags (--overwrite)."""
    return re.sub(r"`([a-z_]+)`", lambda m: flag(m.group(1)) if m.group(1) in OPTIONS else m.group(0), text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FlagFormatter("vsr: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if args.debug else logging.INFO)
    log.propagate = False
    try:
        if args.command not in ("run", "farm"):
            return COMMANDS[args.command](args)
        previous, state = install_signals()
        try:
            return COMMANDS[args.command](args)
        finally:
            if not state["hit"]:  # after a signal, keep ours: a second one must still exit at once
                for signum, old in previous.items():
                    signal.signal(signum, old)
    except VsrError as e:
        if args.debug:
            traceback.print_exc()
        print(f"vsr: error: {message(e)}", file=sys.stderr)
        if isinstance(e, Interrupted):
            # Cleanup is done; leave now. Interpreter shutdown (torch, Ray) restores the default
            # signal handlers, and a second Ctrl-C arriving then would kill us without our exit code.
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(e.exit_code)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - a bug: one line, traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"vsr: internal error: {e.__class__.__name__}: {e} (run with --debug for details)", file=sys.stderr)
        return 1

