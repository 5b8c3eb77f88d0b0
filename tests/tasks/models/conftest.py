"""Model folders as users import them: a tiny ``save_pretrained`` folder and a SAM2-style ``.pt``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture
def hf_folder(tmp_path) -> Path:
    """What ``save_pretrained`` writes for a transformers model: config.json naming the class,
    weights, plus the ``.cache/`` that ``huggingface-cli download --local-dir`` leaves."""
    d = tmp_path / "oneformer-tiny"
    (d / ".cache" / "huggingface").mkdir(parents=True)
    (d / ".cache" / "huggingface" / "download.lock").write_text("x")
    (d / "config.json").write_text(json.dumps({"architectures": ["OneFormerForUniversalSegmentation"],
                                               "model_type": "oneformer"}))
    (d / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 640}}))
    (d / "model.safetensors").write_bytes(os.urandom(300_000))
    (d / "sub").mkdir()
    (d / "sub" / "tokenizer.json").write_text("{}")
    return d


@pytest.fixture(autouse=True)
def _no_mount(monkeypatch, tmp_path):
    """Each test picks its source: no mounted models folder, a cache of its own."""
    monkeypatch.delenv("LEADER360V_MODELS_DIR", raising=False)
    monkeypatch.setenv("LEADER360V_MODEL_CACHE", str(tmp_path / "default-cache"))
