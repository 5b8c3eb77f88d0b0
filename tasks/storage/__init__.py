"""Object stores: one interface, a local directory implementation and (production) MinIO/S3.

``open_store(url)`` picks the implementation from a URL; ``store_from_env()`` reads
``LEADER360V_STORE`` (default: ``./var/store`` under the current directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from tasks.errors import ConfigError
from tasks.storage.base import ObjectInfo, ObjectStore, check_key, join
from tasks.storage.local import LocalStore

__all__ = ["ObjectInfo", "ObjectStore", "LocalStore", "check_key", "join", "open_store", "store_from_env"]

ENV_VAR = "LEADER360V_STORE"
DEFAULT_LOCAL = "var/store"


def open_store(url: str | Path) -> ObjectStore:
    url = str(url)
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return LocalStore(unquote(urlparse(url).path))
    if "://" not in url:
        return LocalStore(url)
    scheme = url.split("://", 1)[0]
    raise ConfigError(
        f"unsupported store URL scheme {scheme!r} in {url!r}: use a directory path or file:///abs/path"
    )


def store_from_env() -> ObjectStore:
    return open_store(os.environ.get(ENV_VAR) or DEFAULT_LOCAL)
