"""Fuzz: the configuration loader (``--config`` files, ``--set`` overrides, DAG-run
``config_overrides``) under random structure and values.

Whatever comes in, :meth:`PipelineConfig.from_file` / :meth:`from_dict` / :meth:`with_overrides`
and the CLI's ``--set`` parsing either give a valid configuration -- every float in it finite --
or raise :class:`~tasks.errors.ConfigError` (exit 2), never anything untyped (issue 12 §9).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.commands._common import config_from_args
from tasks.config import PipelineConfig
from tasks.errors import ConfigError
from tests.fuzz.strategies import json_values, mutated

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULTS = PipelineConfig().model_dump(mode="json")


def _setting_names(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out += _setting_names(v, prefix + k + ".")
    return out


NAMES = _setting_names(DEFAULTS)
keys = st.one_of(st.sampled_from(NAMES), st.text(max_size=12), st.sampled_from(["", ".", "refine.", ".tau", "a..b"]))


def _all_finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True


def _accepted(cfg: PipelineConfig) -> None:
    assert _all_finite(cfg.model_dump(mode="python"))
    assert len(cfg.hash) == 12
    assert PipelineConfig.from_dict(json.loads(cfg.canonical_json())) == cfg   # what a run records reloads


@FUZZ
@given(mutated(DEFAULTS, max_mutations=3))
def test_mutated_configuration_documents(doc):
    try:
        cfg = PipelineConfig.from_dict(doc)
    except ConfigError:
        return
    _accepted(cfg)


@FUZZ
@given(st.dictionaries(keys, json_values, max_size=4))
def test_random_overrides(overrides):
    try:
        cfg = PipelineConfig().with_overrides(overrides)
    except ConfigError:
        return
    _accepted(cfg)


@FUZZ
@given(st.lists(st.one_of(st.builds("{}={}".format, keys, st.one_of(st.text(max_size=10),
                                                                     json_values.map(json.dumps))),
                          st.text(max_size=20)), max_size=4))
def test_random_set_arguments(items):
    """What `--set` receives on the command line (or a DAG run's config_overrides)."""
    try:
        cfg = config_from_args(argparse.Namespace(config=None, set=items))
    except ConfigError:
        return
    _accepted(cfg)


@FUZZ
@given(st.one_of(json_values.map(lambda v: json.dumps(v)), st.text(max_size=80),
                 mutated(DEFAULTS, max_mutations=2).map(json.dumps)),
       st.sampled_from([".json", ".yaml", ""]))
def test_random_config_files(text, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"c{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = PipelineConfig.from_file(path)
        except ConfigError:
            return
        _accepted(cfg)


@FUZZ
@given(mutated(DEFAULTS, max_mutations=2))
def test_random_yaml_config_files(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        try:
            cfg = PipelineConfig.from_file(path)
        except ConfigError:
            return
        _accepted(cfg)
