"""No hub: importing `tasks` puts huggingface_hub and transformers offline, whatever the environment said."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r"""
import os
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["TRANSFORMERS_OFFLINE"] = "0"
import huggingface_hub.constants as c     # imported before tasks: it read "0" already
assert c.HF_HUB_OFFLINE is False
import tasks
from huggingface_hub import is_offline_mode
assert is_offline_mode() and c.HF_HUB_OFFLINE
assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
from transformers import AutoConfig
try:
    AutoConfig.from_pretrained("facebook/oneformer_ade20k_swin_large")
except OSError as exc:
    print("REFUSED", type(exc).__name__)
else:
    raise SystemExit("a hub id was resolved")
"""


def test_importing_tasks_enforces_offline_mode_even_after_the_hub_library(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")          # an empty hub cache: nothing to find offline
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "REFUSED" in res.stdout
