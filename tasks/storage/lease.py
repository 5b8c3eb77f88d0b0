"""A lease held for the length of some work, renewed in the background (issue 12).

``with held_lease(store, key, what=...) as lease: ... lease.check(); commit`` -- the record is
created on entry (waiting up to ``wait_s`` for a live holder, then :class:`~tasks.errors.LeaseHeld`),
renewed every third of its time to live by a daemon thread, checked before the commit point
(:class:`~tasks.errors.LeaseLost` if a renewal failed or it ran out: a process that lost its lease
must not commit over the new holder's files), and released on exit.

Times come from the deployment's environment, not the pipeline configuration (they change no
label): ``LEADER360V_LEASE_TTL_S`` (default 120 s: a killed holder blocks others at most this
long) and ``LEADER360V_LEASE_WAIT_S`` (default 60 s: a second writer waits this long for the first
to commit -- it then skips -- before it fails with exit 1 and Airflow retries it later).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator

from tasks.errors import ConfigError, LeaseLost, PipelineError
from tasks.storage.base import Lease, ObjectStore

log = logging.getLogger(__name__)

LEASES = "leases/"
DEFAULT_TTL_S = 120.0
DEFAULT_WAIT_S = 60.0


def stage_lease_key(video_id: str, run: str, stage: str) -> str:
    """One lease per (video, run, stage); outside ``videos/`` so no stage prefix cleanup touches it."""
    return f"{LEASES}{video_id}/{run}/{stage}.json"


def _env_seconds(name: str, default: float, *, allow_zero: bool) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"${name}={raw!r}: give a finite number of seconds{'' if allow_zero else ' above 0'}")
    return value


def lease_ttl_s() -> float:
    return _env_seconds("LEADER360V_LEASE_TTL_S", DEFAULT_TTL_S, allow_zero=False)


def lease_wait_s() -> float:
    return _env_seconds("LEADER360V_LEASE_WAIT_S", DEFAULT_WAIT_S, allow_zero=True)


class HeldLease:
    """A lease plus the thread that keeps it alive."""

    def __init__(self, store: ObjectStore, lease: Lease):
        self.store = store
        self.lease = lease
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_alive, name=f"lease {lease.key}", daemon=True)
        self._thread.start()

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.lease.ttl_s / 3.0):
            try:
                self.lease = self.store.renew_lease(self.lease)
            except PipelineError as exc:  # LeaseLost, or the store failed: tell the committer
                if not isinstance(exc, LeaseLost):
                    # a failed renewal is not yet a lost lease; try again at the next tick while time is left
                    if self.lease.expires - time.time() > self.lease.ttl_s / 3.0:
                        log.warning("renewing lease %s failed, will retry: %s", self.lease.key, exc)
                        continue
                self.error = exc
                log.error("lost lease %s: %s", self.lease.key, exc)
                return

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this process still holds the lease (call before committing)."""
        if self.error is not None:
            raise LeaseLost(f"lost the lease {self.lease.key!r} before committing ({self.error}); "
                            "nothing was committed — run again") from self.error
        if self.lease.expires - time.time() <= 0:
            raise LeaseLost(f"the lease {self.lease.key!r} ran out before committing; nothing was committed — run again")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.store.release_lease(self.lease)  # a lost lease is not ours: release leaves it alone
        except PipelineError as exc:  # it expires by itself; the work itself succeeded or failed already
            log.warning("could not release lease %s (it expires in %.0f s, or at once for a retry in this "
                        "process): %s", self.lease.key, self.lease.expires - time.time(), exc)


@contextlib.contextmanager
def held_lease(store: ObjectStore, key: str, *, what: str, ttl_s: float | None = None,
               wait_s: float | None = None) -> Iterator[HeldLease]:
    ttl = lease_ttl_s() if ttl_s is None else ttl_s
    wait = lease_wait_s() if wait_s is None else wait_s
    lease = store.acquire_lease(key, ttl_s=ttl, wait_s=wait, what=what)
    held = HeldLease(store, lease)
    try:
        yield held
    finally:
        held.close()
