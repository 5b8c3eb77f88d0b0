"""Private copies of the labeled tiny clip's store (tests/conftest.py ``labeled_tiny``), for tests
that change a store: the session's labeled store stays as the chain left it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def copy_store(src, dest: Path):
    """A LocalStore holding a copy of ``src`` (a LocalStore) at ``dest``."""
    from tasks.storage import LocalStore

    shutil.copytree(src.root, dest)
    return LocalStore(dest)


def released_with_quarantined_upload(src, dest: Path, bad_key: str):
    """A copy of ``src`` released as v1, with the bytes under ``bad_key`` (not a video) ingested and
    so quarantined: ``(store, quarantined video id)``, what the ops dashboard's pages show."""
    from tasks import layout
    from tasks.config import PipelineConfig
    from tasks.errors import InputRejected
    from tasks.stages.release import release
    from tasks.stages.runner import execute

    store = copy_store(src, dest)
    release(store, PipelineConfig())
    store.put_bytes(bad_key, b"this is not a video at all" * 100)
    with pytest.raises(InputRejected):
        execute("ingest", store=store, config=PipelineConfig(), params={"key": bad_key})
    (bad,) = [i.key[len(layout.QUARANTINE):-5] for i in store.list(layout.QUARANTINE)]
    return store, bad
