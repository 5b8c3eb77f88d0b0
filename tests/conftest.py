"""Shared test configuration.

* No test may reach a model hub: HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE are forced on.
* Real 360° data lives beside the repo in ../shared/data (override with LEADER360V_SHARED_DATA);
  tests that need it skip with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LEADER360V_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real 360° data not found at {SHARED_DATA} (set LEADER360V_SHARED_DATA to its folder)")
    return SHARED_DATA
