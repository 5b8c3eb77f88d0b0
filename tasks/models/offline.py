"""No model hub, ever: ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` set in code (issue 13 §3).

Weights come from the model store or a mounted path (:func:`tasks.models.model_path`), checked
against their manifest. A ``from_pretrained("org/name")`` that slipped through would otherwise
download unverified files on a GPU pod (and hang on a cluster without egress), so the switch is
not left to the Makefile or the pod's environment: :mod:`tasks` calls :func:`enforce_offline` when
it is imported, before anything can import ``transformers`` or ``huggingface_hub`` through it.

``huggingface_hub`` reads the variables once, into ``huggingface_hub.constants.HF_HUB_OFFLINE``,
when it is first imported; if a host process imported it before :mod:`tasks` (a notebook, a test
runner plugin), that constant is set too, since ``is_offline_mode()`` reads it on every call.
A value of ``0`` in the environment is overridden on purpose: there is no supported way to let
this package reach a hub.
"""

from __future__ import annotations

import os
import sys

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def enforce_offline() -> None:
    """Put the Hugging Face libraries in offline mode, whether or not they are imported yet."""
    for var in OFFLINE_VARS:
        os.environ[var] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
