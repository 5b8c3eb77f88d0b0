"""Argument helpers shared by the CLI and its command groups (one definition of --store/--config)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=path_arg, help="pipeline configuration file (JSON or YAML); default: the method's defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set refine.tau=0.004 (repeatable; VALUE is JSON or a string)")


def add_store_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "./var/store") -> None:
    p.add_argument("--store", help="object store: a directory, file:///path or s3://bucket/prefix "
                                   f"(default: $LEADER360V_STORE or {default})")


def add_group(sub, fmt, name: str, *, help: str, description: str, required: bool = True,
              metavar: str = "ACTION"):
    """A command group, ``python -m tasks NAME ACTION ...``: ``(its parser, the subparsers its
    actions go in)``. ``required=False`` for a group that also runs without an action."""
    p = sub.add_parser(name, help=help, description=description, formatter_class=fmt)
    return p, p.add_subparsers(dest=f"{name}_command", required=required, metavar=metavar)


def add_action(actions, fmt, name: str, handler, *, help: str, description: str | None = None,
               store: bool = True) -> argparse.ArgumentParser:
    """One action of a group: its parser, ``--store`` (every action reads the object store) and
    the handler the CLI calls with the parsed arguments; the caller adds the action's own
    arguments to the returned parser."""
    a = actions.add_parser(name, help=help, description=description, formatter_class=fmt)
    if store:   # its own section: --help lists it after the action's own options
        add_store_arg(a.add_argument_group("object store"))
    a.set_defaults(handler=handler)
    return a


def config_from_args(args):
    """The PipelineConfig of ``--config`` and ``--set`` (the method's defaults without them)."""
    from tasks.config import PipelineConfig
    from tasks.errors import ConfigError

    cfg = PipelineConfig.from_file(args.config) if getattr(args, "config", None) else PipelineConfig()
    overrides = {}
    for item in getattr(args, "set", []) or []:
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    return cfg.with_overrides(overrides)


def path_arg(text: str) -> Path:
    """A file or folder argument: an empty string (it would mean the current folder, and
    ``evaluate --pred ''`` crashed naming its output) or a NUL byte (no OS path can hold one)
    is a usage error, exit 2, found by tests/fuzz/test_fuzz_cli.py."""
    if not text:
        raise argparse.ArgumentTypeError("a path cannot be empty")
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a path cannot contain a NUL byte")
    return Path(text)


def bounded_float(name: str, low: float, high: float, *, low_open: bool = True):
    """An argparse ``type=`` for a finite number in (low, high] (or [low, high]): a bad value is an
    argparse error (exit 2, one line) before any work. ``float()`` alone accepts 'nan' and 'inf'
    (issue 12: `review --expires-hours nan` reached the store)."""
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value > high or (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(
                f"{name} must be a number {'over' if low_open else 'from'} {low:g} and at most {high:g}, got {text!r}")
        return value

    return parse


def expires_hours(text: str) -> float:
    """``--expires-hours``: presigned links live more than 0 and at most 168 h (S3 SigV4's 7-day cap)."""
    return bounded_float("--expires-hours", 0.0, 168.0)(text)


def hex_id(name: str, digits: int):
    """An argparse ``type=`` for a content id / run hash: ``digits`` lowercase hex digits (a bad one
    is a one-line usage error, not a ValueError from deep in the store layout)."""
    import re

    pattern = re.compile(rf"^[0-9a-f]{{{digits}}}$")

    def parse(text: str) -> str:
        if not pattern.match(text):
            raise argparse.ArgumentTypeError(f"{name} must be {digits} lowercase hex digits, got {text!r}")
        return text

    return parse


def store_from_args(args):
    from tasks.storage import open_store, store_from_env

    return open_store(args.store) if getattr(args, "store", None) else store_from_env()


def print_json(obj) -> None:
    print(json.dumps(obj, indent=1, ensure_ascii=False))
