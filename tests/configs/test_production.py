"""configs/production.yaml, the one switch to the method's models (issue 13 §4): it validates, names
backends and models that exist, and is what the deployment (Helm values, Airflow image,
kubernetes mode) runs with."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.config import PipelineConfig
from tasks.models.manifest import NAME_RE

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "configs" / "production.yaml"
IMAGE_PATH = "/opt/airflow/leader360v/configs/production.yaml"


@pytest.fixture(scope="module")
def cfg() -> PipelineConfig:
    return PipelineConfig.from_file(PRODUCTION)


def test_it_is_the_methods_models_on_a_gpu(cfg):
    assert cfg.propose.entity_backend == "sam2_amg" and cfg.propose.layout == "tiles"
    assert list(cfg.propose.panoptic_backends) == ["oneformer_ade20k", "oneformer_coco", "oneformer_cityscapes"]
    assert cfg.verify.verifier == "openai" and cfg.verify.llm_base_url is None   # the deployment's endpoint
    pc = cfg.propagate
    assert (pc.backend, pc.sam2_model, pc.sam2_image_size) == ("sam2", "large", 1024)
    assert NAME_RE.match(pc.sam2_checkpoint) and pc.sam2_checkpoint_sha256 is None   # a model-store name
    assert cfg.propose.device == pc.sam2_device == "cuda"


def test_the_segmentors_see_the_methods_tiles(cfg):
    """ERP 2048x1024 -> three 1024² tiles, SAM2's input size, not 512² tiles upsampled 2x [M §1.1, §1.2(a)]."""
    from tasks.geometry.tiles import tile_layout

    assert cfg.video.max_width >= cfg.propose.work_width == 2048
    lay = tile_layout(cfg.propose.work_width // 2, cfg.propose.work_width, cfg.tiling.pad_ratio)
    assert (lay.size, lay.pad, lay.overlap, lay.starts) == (1024, 256, 256, (0, 768, 1536))
    assert lay.size == cfg.propagate.sam2_image_size
    assert cfg.propose.panoptic_input_width == 640     # the voters' own resize [M §1.2(b)]


def test_every_backend_it_names_is_registered(cfg):
    from tasks.backends.panoptic_hf import VOTERS

    assert set(cfg.propose.panoptic_backends) <= set(VOTERS)
    assert {VOTERS[v].label_space for v in cfg.propose.panoptic_backends} == {"ade20k", "coco_panoptic", "cityscapes"}


def test_the_cli_shows_it():
    res = subprocess.run([sys.executable, "-m", "tasks", "config", "--config", str(PRODUCTION)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["hash"] == PipelineConfig.from_file(PRODUCTION).hash
    assert shown["config"]["propagate"]["sam2_checkpoint"] == "sam2.1-hiera-large"


def test_the_deployment_runs_with_it():
    """Helm values point LEADER360V_CONFIG at the file where the Airflow image puts it."""
    values = yaml.safe_load((REPO / "docker" / "helm" / "values.yaml").read_text())
    env = {e["name"]: e.get("value") for e in values["env"]}
    assert env["LEADER360V_CONFIG"] == IMAGE_PATH
    dockerfile = (REPO / "docker" / "Dockerfile.airflow").read_text()
    assert re.search(r"^COPY --chown=\S+ configs /opt/airflow/leader360v/configs$", dockerfile, re.M)
    assert "!configs/**" in (REPO / "docker" / "Dockerfile.airflow.dockerignore").read_text().splitlines()


def test_kubernetes_mode_records_the_same_run_in_the_pod(monkeypatch, cfg):
    """The Airflow side reads the file; the ingest pod rebuilds exactly that configuration from
    its arguments (same run hash), as local mode would."""
    pytest.importorskip("airflow")
    from leader360v_airflow import pod_tasks, settings

    monkeypatch.setenv("LEADER360V_CONFIG", str(PRODUCTION))
    assert settings.pipeline_config().hash == cfg.hash
    args = pod_tasks.config_arguments(settings.pipeline_config())
    overrides = {a.split("=", 1)[0]: json.loads(a.split("=", 1)[1]) for a in args[1::2]}
    assert PipelineConfig().with_overrides(overrides).hash == cfg.hash


def test_a_model_not_imported_yet_fails_with_the_import_to_run(tmp_path, monkeypatch, cfg):
    from tasks.backends.sam2_propagator import build_sam2_propagator
    from tasks.models import ModelMissing
    from tasks.storage import LocalStore

    monkeypatch.delenv("LEADER360V_MODELS_DIR", raising=False)
    cpu = cfg.with_overrides({"propagate.sam2_device": "cpu"})
    with pytest.raises(ModelMissing) as err:
        build_sam2_propagator(cpu, 2048, store=LocalStore(tmp_path / "store"))
    assert err.value.exit_code == 2
    assert "`python -m tasks models import DIR --name sam2.1-hiera-large`" in str(err.value)
