"""Argument helpers shared by the CLI and its command groups (one definition of --store/--config)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="pipeline configuration file (JSON or YAML); default: the method's defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set refine.tau=0.004 (repeatable; VALUE is JSON or a string)")


def add_store_arg(p: argparse.ArgumentParser, default: str = "./var/store") -> None:
    p.add_argument("--store", help="object store: a directory, file:///path or s3://bucket/prefix "
                                   f"(default: $LEADER360V_STORE or {default})")


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


def store_from_args(args):
    from tasks.storage import open_store, store_from_env

    return open_store(args.store) if getattr(args, "store", None) else store_from_env()


def print_json(obj) -> None:
    print(json.dumps(obj, indent=1, ensure_ascii=False))
