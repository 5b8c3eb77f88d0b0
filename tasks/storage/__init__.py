"""Object stores: one interface, a local directory implementation and (production) MinIO/S3.

``open_store(url)`` picks the implementation from a URL:

* a directory path or ``file:///abs/path`` → :class:`LocalStore`;
* ``s3://bucket[/key/prefix][?endpoint=host:port&secure=false&region=..&create=true]`` →
  :class:`~tasks.storage.s3.S3Store`, with credentials from ``LEADER360V_S3_ACCESS_KEY`` /
  ``LEADER360V_S3_SECRET_KEY`` (or ``AWS_*``) or passed as keyword options — never in the URL.

``store_from_env()`` reads ``LEADER360V_STORE`` (default: ``./var/store`` under the current
directory). The S3 store is imported on demand, so a laptop run never loads the S3 client.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.errors import ConfigError
from tasks.storage.base import ObjectInfo, ObjectStore, check_key, join
from tasks.storage.local import LocalStore

if TYPE_CHECKING:
    from tasks.storage.s3 import S3Store

__all__ = ["ObjectInfo", "ObjectStore", "LocalStore", "S3Store", "check_key", "join", "open_store",
           "store_from_env"]

ENV_VAR = "LEADER360V_STORE"
DEFAULT_LOCAL = "var/store"


def __getattr__(name: str) -> Any:
    if name == "S3Store":
        from tasks.storage.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str | Path, **options: Any) -> ObjectStore:
    """The store a URL names. ``options`` go to :class:`S3Store` (e.g. credentials from an
    Airflow connection: ``open_store("s3://leader360v", access_key=..., secret_key=...)``)."""
    url = str(url)
    if url.startswith("s3://"):
        from tasks.storage.s3 import S3Store

        return S3Store.from_url(url, **options)
    if options:
        raise ConfigError(f"options {', '.join(sorted(options))} apply to s3:// stores only, not {url!r}")
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return LocalStore(unquote(urlparse(url).path))
    if "://" not in url:
        return LocalStore(url)
    scheme = url.split("://", 1)[0]
    raise ConfigError(
        f"unsupported store URL scheme {scheme!r} in {url!r}: use a directory path, file:///abs/path "
        "or s3://bucket[/prefix]"
    )


def store_from_env() -> ObjectStore:
    return open_store(os.environ.get(ENV_VAR) or DEFAULT_LOCAL)
