"""The object-store interface every stage reads and writes through.

Keys are POSIX-style relative paths (``videos/ab12/source.json``). Two implementations share it:
:class:`~tasks.storage.local.LocalStore` (a directory; the embedded default) and the MinIO/S3
store of the production deployment. Stages never touch the filesystem behind a store directly;
when a tool needs a real file (ffmpeg, an image decoder) they ask for :meth:`local_file`.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.errors import InvalidKey, LeaseHeld, LeaseLost, ObjectNotFound


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime  # timezone-aware UTC


def check_key(key: str) -> str:
    """Reject keys that could escape the store or alias another key.

    Raises :class:`~tasks.errors.InvalidKey` (exit 2; also a ValueError): a key is what a person
    or a request gave, and retrying the same key cannot help (issue 12).
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"object key must be a non-empty string, got {key!r}")
    if key.startswith("/") or "\\" in key or any(ord(c) < 32 or c == "\x7f" for c in key):
        raise InvalidKey(f"invalid object key {key!r}: keys are relative POSIX paths (no leading '/', "
                         "no backslash, no control characters)")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate: no store can hold its name
        raise InvalidKey(f"invalid object key {key!r}: not valid UTF-8") from None
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise InvalidKey(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    if len(key.encode("utf-8")) > 1024 or any(len(p.encode("utf-8")) > 255 for p in parts):
        # S3's limit on a key, and a local store's on one file name (ext4, APFS, NTFS)
        raise InvalidKey(f"invalid object key {key[:60]!r}...: longer than 1024 bytes, or a segment over 255")
    return key


@dataclass(frozen=True)
class Lease:
    """A held lease: the key of its record, this acquisition's token, who holds it, until when."""

    key: str
    token: str
    holder: dict
    expires: float   # time.time() seconds
    ttl_s: float


# A takeover marker older than this belongs to a taker that died mid-takeover (takeovers take
# milliseconds); it is removed so the lease does not stay stuck.
_TAKEOVER_STALE_S = 30.0
# A holder releases (or renews) only while its lease has at least this much left (a quarter of
# a short ttl), so it never deletes a record that a taker is replacing at the moment of expiry.
_RELEASE_MARGIN_S = 1.0


def _margin(ttl_s: float) -> float:
    return min(_RELEASE_MARGIN_S, float(ttl_s) / 4.0)


def lease_holder() -> dict:
    """Who is asking: host and pid, and the Airflow task try when this process runs one
    (Airflow exports AIRFLOW_CTX_* to a task's process; a pod's host name is its pod name)."""
    holder = {"host": socket.gethostname(), "pid": os.getpid()}
    ns = _pid_namespace()
    if ns:
        holder["pidns"] = ns
    for field, var in (("dag", "AIRFLOW_CTX_DAG_ID"), ("run", "AIRFLOW_CTX_DAG_RUN_ID"),
                       ("task", "AIRFLOW_CTX_TASK_ID"), ("try", "AIRFLOW_CTX_TRY_NUMBER")):
        if os.environ.get(var):
            holder[field] = os.environ[var]
    return holder


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


# Tokens of the leases this process holds now. A record naming this process whose token is not
# here is an orphan of this process (its release failed, e.g. the store was unreachable, and the
# work was retried in the same process: `label`, a test): it is taken over, not waited for.
_HELD_TOKENS: set[str] = set()


def _same_process(holder: dict | None) -> bool:
    return bool(holder) and holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid() \
        and holder.get("pidns") == _pid_namespace()


def lease_is_takeable(record: dict) -> bool:
    """Expired, or its holder is gone, or it is an orphan of this process."""
    holder = record.get("holder")
    if float(record.get("expires", 0)) <= time.time() or holder_is_gone(holder):
        return True
    return _same_process(holder) and record.get("token") not in _HELD_TOKENS


def holder_is_gone(holder: dict | None) -> bool:
    """True when the holder was a process on this very host and pid namespace that no longer
    exists (SIGKILLed, OOM-killed): its lease need not run out before another process takes
    over. A holder elsewhere (another pod, another host) is never judged gone: its lease expires."""
    if not holder or holder.get("host") != socket.gethostname() or not holder.get("pidns"):
        return False
    if holder.get("pidns") != _pid_namespace():
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, owned by someone else
        return False
    return False


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

    # -- leases (issue 12) ----------------------------------------------------------------
    # One writer at a time for something many processes may start at once (a stage of one video
    # and run). Built only on put_if_absent (an exclusive create: os.link on a local store, a PUT
    # with If-None-Match: * on S3/MinIO), get_bytes, put_bytes and delete, so both stores share
    # one algorithm:
    #   acquire  = exclusive create of the record; if it exists and has expired (or its holder was
    #              a process on this host that is gone, or it is an orphan of this process, see
    #              lease_is_takeable), take it over;
    #   takeover = exclusive create of "<key>.takeover-<token>" (one taker per expired record),
    #              re-read: still that token and expired -> delete it; then race to create again;
    #   renew    = rewrite the record (same token) while it has time left;
    #   release  = delete the record while it has time left (an expired one is left to takers).
    # Expiry compares wall clocks of the processes involved: hosts sharing a store need NTP.
    def read_lease(self, key: str) -> dict | None:
        """The lease record at ``key``; None when there is none. A record that is not valid JSON
        (written by something else) counts as expired, so it cannot block writers forever."""
        try:
            data = self.get_bytes(key)
        except ObjectNotFound:
            return None
        try:
            rec = json.loads(data.decode("utf-8"))
            if not isinstance(rec, dict) or not isinstance(rec.get("expires"), (int, float)):
                raise ValueError("not a lease record")
        except (ValueError, UnicodeDecodeError):
            import hashlib

            return {"token": "corrupt-" + hashlib.sha256(data).hexdigest()[:16], "expires": 0.0, "holder": {}}
        return rec

    def acquire_lease(self, key: str, *, ttl_s: float, wait_s: float = 0.0, what: str | None = None,
                      holder: dict | None = None, poll_s: float = 0.25) -> Lease:
        """Hold ``key`` for ``ttl_s`` seconds (renew before it runs out), waiting up to ``wait_s``
        for a live holder to let go; :class:`LeaseHeld` (transient, exit 1) names the holder."""
        if not ttl_s > 0:
            raise ValueError(f"a lease needs a positive time to live, not {ttl_s!r}")
        holder = dict(holder or lease_holder())
        t0 = time.monotonic()
        while True:
            token = uuid.uuid4().hex
            now = time.time()
            record = {"token": token, "holder": holder, "acquired": now, "expires": now + ttl_s, "ttl_s": ttl_s}
            created = False
            _HELD_TOKENS.add(token)  # before the create: a thread of this process must never see it as an orphan
            try:
                created = self.put_if_absent(key, json.dumps(record, sort_keys=True).encode())
            finally:
                if not created:
                    _HELD_TOKENS.discard(token)
            if created:
                return Lease(key, token, holder, record["expires"], ttl_s)
            cur = self.read_lease(key)
            if cur is None:
                continue  # released between our create and our read: try again at once
            left = float(cur["expires"]) - time.time()
            if lease_is_takeable(cur):
                self._take_over_lease(key, cur)
                continue
            waited = time.monotonic() - t0
            if waited >= wait_s:
                raise LeaseHeld(what or key, cur.get("holder") or {}, left, waited)
            time.sleep(max(0.01, min(poll_s, wait_s - waited, left)))

    def _take_over_lease(self, key: str, expired: dict) -> None:
        marker = f"{key}.takeover-{expired['token']}"
        if not self.put_if_absent(marker, json.dumps({"time": time.time()}).encode()):
            try:
                started = float(json.loads(self.get_bytes(marker)).get("time", 0))
            except (ObjectNotFound, ValueError, TypeError, AttributeError):
                return
            if time.time() - started > _TAKEOVER_STALE_S:
                self.delete(marker)  # its taker died mid-takeover
            else:
                time.sleep(0.05)  # another process is taking it over right now
            return
        try:
            cur = self.read_lease(key)
            if cur is not None and cur.get("token") == expired["token"] and lease_is_takeable(cur):
                self.delete(key)
        finally:
            self.delete(marker)

    def renew_lease(self, lease: Lease, ttl_s: float | None = None) -> Lease:
        """Extend ``lease``; :class:`LeaseLost` if it ran out or another process holds it now."""
        ttl = float(ttl_s or lease.ttl_s)
        cur = self.read_lease(lease.key)
        now = time.time()
        if cur is None or cur.get("token") != lease.token or float(cur["expires"]) - now < _margin(lease.ttl_s):
            raise LeaseLost(f"the lease {lease.key!r} ran out or was taken over before this process committed; "
                            "nothing was committed — run again")
        record = {**cur, "expires": now + ttl, "ttl_s": ttl}
        self.put_bytes(lease.key, json.dumps(record, sort_keys=True).encode(), content_type="application/json")
        return Lease(lease.key, lease.token, lease.holder, record["expires"], ttl)

    def release_lease(self, lease: Lease) -> bool:
        """Let go of ``lease`` (True if this call deleted its record). An expired record is left
        for the next writer to take over: deleting it could delete a taker's new record."""
        try:
            cur = self.read_lease(lease.key)
            if cur is None or cur.get("token") != lease.token:
                return False
            if float(cur["expires"]) - time.time() < _margin(lease.ttl_s):
                return False
            self.delete(lease.key)
            return True
        finally:
            _HELD_TOKENS.discard(lease.token)  # even when the store could not be reached: an orphan now
