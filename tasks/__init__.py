"""The Leader360V-style 360° video labeling engine.

An importable package with no Airflow import anywhere: geometry, storage, video I/O, model
backends, the pipeline stages, the release format, metrics and synthetic data. One CLI:
``python -m tasks --help``.
"""

__version__ = "0.1.0"

# No model hub, ever (issue 13 §3): set before anything imported through this package can import
# transformers or huggingface_hub. See tasks/models/offline.py.
from tasks.models.offline import enforce_offline as _enforce_offline  # noqa: E402

_enforce_offline()
