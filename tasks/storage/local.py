"""A directory as an object store: the embedded default for laptops, tests and CI."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from tasks.errors import ObjectNotFound, StoreError
from tasks.storage.base import ObjectInfo, ObjectStore, check_key

_TMP_MARK = ".l360tmp-"


class LocalStore(ObjectStore):
    """Objects are files under ``root``. Every write goes to a temporary sibling first and is
    renamed into place, so readers never see a partial object."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _tmp_for(self, dest: Path) -> Path:
        return dest.with_name(f"{_TMP_MARK}{uuid.uuid4().hex}-{dest.name}")

    # -- primitives -----------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        dest = self.path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp_for(dest)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except OSError as exc:
            with contextlib.suppress(Exception):
                tmp.unlink(missing_ok=True)  # type: ignore[possibly-undefined]
            raise StoreError(f"cannot write {key!r} under {self.root}: {exc.strerror or exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError) as exc:  # a/b/c where a/b is an object: as on S3
            raise ObjectNotFound(f"no object {key!r} in {self.root}") from exc
        except IsADirectoryError as exc:
            raise ObjectNotFound(f"{key!r} is a prefix, not an object, in {self.root}") from exc

    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_for(dest)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot copy {path} to {key!r}: {exc.strerror or exc}") from exc

    def get_file(self, key: str, path: str | Path) -> None:
        src = self.path(key)
        if not src.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.root}")
        shutil.copyfile(src, path)

    def stat(self, key: str) -> ObjectInfo:
        p = self.path(key)
        try:
            st = p.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:  # a/b/c where a/b is an object: as on S3
            raise ObjectNotFound(f"no object {key!r} in {self.root}") from exc
        if not p.is_file():
            raise ObjectNotFound(f"{key!r} is a prefix, not an object")
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        base = self.root
        # A prefix may end mid-name ("raw/vid" matches "raw/video.mp4"), like S3 listings.
        head, _, partial = prefix.rpartition("/")
        start = base / head if head else base
        if not start.is_dir():
            return
        if recursive:
            # lexicographic key order, as S3 lists (a/b/c before a/x)
            infos = [i for dirpath, _, files in os.walk(start) for name in files
                     for i in self._info(Path(dirpath) / name, prefix)]
            yield from sorted(infos, key=lambda i: i.key)
        else:
            for child in sorted(start.iterdir()):
                if child.is_file():
                    yield from self._info(child, prefix)

    def _info(self, p: Path, prefix: str) -> Iterator[ObjectInfo]:
        if p.name.startswith(_TMP_MARK):
            return
        key = p.relative_to(self.root).as_posix()
        if not key.startswith(prefix):
            return
        try:
            st = p.stat()
        except FileNotFoundError:  # deleted while listing
            return
        yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list_prefixes(self, prefix: str) -> list[str]:
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        return [prefix + c.name + "/" for c in sorted(base.iterdir()) if c.is_dir()]

    def copy(self, src: str, dst: str) -> None:
        s = self.path(src)
        if not s.is_file():
            raise ObjectNotFound(f"no object {src!r} in {self.root}")
        self.put_file(dst, s)

    def delete(self, key: str) -> None:
        p = self.path(key)
        p.unlink(missing_ok=True)
        # prune empty parent folders so listings of "prefixes" stay meaningful
        parent = p.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """An exclusive create, like ``open(O_CREAT | O_EXCL)``, but of a fully written file: the
        content goes to a temporary sibling, then ``os.link`` creates the key or fails with
        EEXIST, atomically. So a reader (a lease holder's rival, issue 12) never sees the object
        half-written, and a writer killed mid-write leaves no empty object that blocks others."""
        dest = self.path(key)
        for attempt in range(5):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp_for(dest)
            try:
                tmp.write_bytes(data)
                os.link(tmp, dest)  # atomic create-if-absent on POSIX
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:
                # a concurrent delete pruned the (empty) folder between our mkdir and our write
                if attempt == 4:
                    raise
            except OSError as exc:
                raise StoreError(f"cannot create {key!r} under {self.root}: {exc.strerror or exc}") from exc
            finally:
                tmp.unlink(missing_ok=True)
        return False  # pragma: no cover - the loop returns or raises

    def uri(self, key: str = "") -> str:
        base = "file://" + quote(str(self.root))
        return base + ("/" + quote(check_key(key)) if key else "")

    def key_from_uri(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"{uri!r} is not a file:// URI of this store")
        path = Path(unquote(parsed.path))
        try:
            key = path.relative_to(self.root).as_posix()
        except ValueError as exc:
            raise ValueError(f"{uri!r} is outside the store root {self.root}") from exc
        return key + "/" if parsed.path.endswith("/") else key  # a prefix stays a prefix

    # Local files need no temporary copy.
    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        p = self.path(key)
        if not p.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.root}")
        yield p
