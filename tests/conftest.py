"""Shared test configuration.

* No test may reach a model hub: HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE are forced on.
* Airflow is pointed at a throw-away home (SQLite) before anything imports it.
* Real 360° data lives beside the repo in ../shared/data (override with LEADER360V_SHARED_DATA);
  tests that need it skip with a clear reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support
SHARED_DATA = Path(os.environ.get("LEADER360V_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TQDM_DISABLE", "1")
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="l360-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["LEADER360V_RETRY_DELAY_SECONDS"] = "1"
# `make test` exports the project's store for the demo; tests must never write into it
os.environ.pop("LEADER360V_STORE", None)
os.environ.pop("LEADER360V_CONFIG", None)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real 360° data not found at {SHARED_DATA} (set LEADER360V_SHARED_DATA to its folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A 2 s, 8 fps, 256x128 synthetic clip with ground truth (every scenario of the defaults)."""
    from tasks.synth import render_clip

    out = tmp_path_factory.mktemp("tiny_clip")
    render_clip(out, seconds=2.0, fps=8.0, width=256, seed=1, progress=False)
    return out


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory) -> Path:
    """A 3 s, 10 fps, 512x256 synthetic clip, big enough for the CPU labelers to work."""
    from tasks.synth import render_clip

    out = tmp_path_factory.mktemp("small_clip")
    render_clip(out, seconds=3.0, fps=10.0, width=512, seed=2, progress=False)
    return out


@pytest.fixture(scope="session")
def labeled_tiny(tiny_clip, tmp_path_factory):
    """The whole chain run once on the tiny clip: (store, video_id, run, results)."""
    from tasks.config import PipelineConfig
    from tasks.stages.runner import run_chain
    from tasks.storage import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("store"))
    store.put_file("raw/tiny.mp4", tiny_clip / "clip.mp4")
    config = PipelineConfig()
    results = run_chain(store=store, config=config, key="raw/tiny.mp4", progress=False)
    return store, results[0].video_id, config.hash, results


@pytest.fixture(scope="session")
def airflow_db():
    """An initialised Airflow metadata DB (SQLite) in the throw-away home."""
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    proc = subprocess.run([airflow, "db", "migrate"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return airflow
