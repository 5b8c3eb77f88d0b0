"""The object-store interface every stage reads and writes through.

Keys are POSIX-style relative paths (``videos/ab12/source.json``). Two implementations share it:
:class:`~tasks.storage.local.LocalStore` (a directory; the embedded default) and the MinIO/S3
store of the production deployment. Stages never touch the filesystem behind a store directly;
when a tool needs a real file (ffmpeg, an image decoder) they ask for :meth:`local_file`.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.errors import ObjectNotFound


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime  # timezone-aware UTC


def check_key(key: str) -> str:
    """Reject keys that could escape the store or alias another key."""
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid object key {key!r}: keys are relative POSIX paths")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise ValueError(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    return key


def join(*parts: str) -> str:
    return posixpath.join(*[p.strip("/") for p in parts if p])


class ObjectStore(ABC):
    """Minimal blob store. Implementations must make :meth:`put_bytes` atomic per object:
    a reader sees the old object, the new one, or nothing, never a partial one."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> None: ...

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> None: ...

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; True if this call created it."""

    @abstractmethod
    def uri(self, key: str = "") -> str: ...

    @abstractmethod
    def key_from_uri(self, uri: str) -> str: ...

    @abstractmethod
    def list_prefixes(self, prefix: str) -> list[str]:
        """Immediate "sub-folders" of ``prefix`` (like S3 CommonPrefixes), each ending in '/'."""

    def copy(self, src: str, dst: str) -> None:
        """Copy one object (remote stores override this with a server-side copy)."""
        self.put_bytes(dst, self.get_bytes(src))

    # -- conveniences built on the primitives ---------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for info in list(self.list(prefix)):
            self.delete(info.key)
            n += 1
        return n

    def put_json(self, key: str, obj: Any) -> None:
        data = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")
        self.put_bytes(key, data, content_type="application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key).decode("utf-8"))

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        """A readable local path holding the object (a temporary copy for remote stores)."""
        with tempfile.TemporaryDirectory(prefix="l360-") as tmp:
            path = Path(tmp) / posixpath.basename(key)
            self.get_file(key, path)
            yield path

    @contextlib.contextmanager
    def local_dir(self, prefix: str, *, suffix: str = "") -> Iterator[Path]:
        """A local directory mirroring every object under ``prefix`` (ending in ``suffix``)."""
        prefix = prefix.rstrip("/") + "/"
        with tempfile.TemporaryDirectory(prefix="l360-") as tmp:
            for info in self.list(prefix):
                if suffix and not info.key.endswith(suffix):
                    continue
                dest = Path(tmp) / info.key[len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.get_file(info.key, dest)
            yield Path(tmp)
