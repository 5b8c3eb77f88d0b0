"""The Leader360V-style 360° video labeling engine.

An importable package with no Airflow import anywhere: geometry, storage, video I/O, model
backends, the pipeline stages, the release format, metrics and synthetic data. One CLI:
``python -m tasks --help``.
"""

__version__ = "0.1.0"
