"""Leases (issue 12) on both stores: a local folder and an S3 server on loopback (moto)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tasks.errors import EXIT_ERROR, LeaseHeld, LeaseLost
from tasks.storage.base import lease_holder
from tasks.storage.lease import held_lease
from tasks.storage.local import LocalStore

KEY = "leases/0123456789abcdef/abc123abc123/propagate.json"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("make_s3")()


def test_a_second_writer_is_refused_with_the_holders_identity(store):
    first = store.acquire_lease(KEY, ttl_s=30)
    assert first.holder["pid"] == os.getpid() and first.holder["host"]
    t = time.monotonic()
    with pytest.raises(LeaseHeld) as info:
        store.acquire_lease(KEY, ttl_s=30, wait_s=0.5, what="stage propagate of video 0123456789abcdef")
    assert 0.5 <= time.monotonic() - t < 5
    err = info.value
    assert err.exit_code == EXIT_ERROR and err.retryable                     # Airflow retries it later
    assert f"pid {os.getpid()}" in str(err) and first.holder["host"] in str(err)
    assert "stage propagate of video 0123456789abcdef" in str(err)
    assert json.loads(store.get_bytes(KEY))["token"] == first.token          # the holder's record is untouched
    assert store.release_lease(first)
    second = store.acquire_lease(KEY, ttl_s=30)                              # free again
    assert second.token != first.token
    store.release_lease(second)
    assert not store.exists(KEY)


def test_a_waiting_writer_gets_the_lease_when_the_holder_lets_go(store):
    first = store.acquire_lease(KEY, ttl_s=30)
    threading.Timer(0.4, store.release_lease, args=(first,)).start()
    t = time.monotonic()
    second = store.acquire_lease(KEY, ttl_s=30, wait_s=10, poll_s=0.05)
    assert 0.3 < time.monotonic() - t < 5
    store.release_lease(second)


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew_release_or_commit(store):
    old = store.acquire_lease(KEY, ttl_s=0.4, holder={"host": "elsewhere", "pid": 1})
    new = store.acquire_lease(KEY, ttl_s=30, wait_s=5, poll_s=0.05)           # waits for expiry, takes over
    assert new.token != old.token
    with pytest.raises(LeaseLost):
        store.renew_lease(old)
    assert store.release_lease(old) is False                                 # must not delete the new record
    assert json.loads(store.get_bytes(KEY))["token"] == new.token
    assert store.renew_lease(new).expires >= new.expires
    assert [i.key for i in store.list("leases/")] == [KEY]                   # no takeover marker left behind
    store.release_lease(new)


def test_a_renewed_lease_outlives_its_ttl_and_check_guards_the_commit(store):
    with held_lease(store, KEY, what="w", ttl_s=0.6, wait_s=0) as held:
        time.sleep(1.5)                                                      # > 2 x ttl: the thread renewed it
        held.check()
        with pytest.raises(LeaseHeld):
            store.acquire_lease(KEY, ttl_s=1, wait_s=0)
    assert not store.exists(KEY)                                             # released on exit


def test_check_fails_when_the_lease_was_lost(store):
    with pytest.raises(LeaseLost):
        with held_lease(store, KEY, what="w", ttl_s=0.9, wait_s=0) as held:
            # another process takes the record over (as after an expiry) behind the holder's back
            store.delete(KEY)
            rival = store.acquire_lease(KEY, ttl_s=30)
            time.sleep(0.7)                                                  # the keep-alive notices
            try:
                held.check()
            finally:
                assert json.loads(store.get_bytes(KEY))["token"] == rival.token
                store.release_lease(rival)


def test_a_corrupt_record_does_not_block_writers_forever(store):
    store.put_bytes(KEY, b"{half a record")
    lease = store.acquire_lease(KEY, ttl_s=5, wait_s=0)
    store.release_lease(lease)


def test_only_one_of_many_racing_writers_holds_the_lease_at_a_time(store):
    inside, overlaps, done = [0], [], []
    lock = threading.Lock()

    def writer(i):
        lease = store.acquire_lease(KEY, ttl_s=30, wait_s=60, poll_s=0.01)
        with lock:
            inside[0] += 1
            overlaps.append(inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1
        store.release_lease(lease)
        done.append(i)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(done) == list(range(6)) and max(overlaps) == 1


def test_a_killed_holder_on_this_host_is_taken_over_at_once(tmp_path):
    """SIGKILL runs no release: a holder that was a process on this host and is gone does not
    block the next writer for its whole ttl; one elsewhere (another pod) does, until expiry."""
    root = tmp_path / "store"
    code = (f"from tasks.storage.local import LocalStore; s = LocalStore({str(root)!r}); "
            f"s.acquire_lease({KEY!r}, ttl_s=600); print('held', flush=True); import time; time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    store = LocalStore(root)
    with pytest.raises(LeaseHeld, match=f"pid {proc.pid}"):
        store.acquire_lease(KEY, ttl_s=5, wait_s=0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    t = time.monotonic()
    lease = store.acquire_lease(KEY, ttl_s=5, wait_s=0)
    assert time.monotonic() - t < 1
    store.release_lease(lease)
    # a holder on another host is never judged gone
    other = {**lease_holder(), "host": "another-pod", "pid": proc.pid}
    store.acquire_lease(KEY, ttl_s=30, holder=other)
    with pytest.raises(LeaseHeld, match="host another-pod"):
        store.acquire_lease(KEY, ttl_s=5, wait_s=0)


def test_lease_times_from_the_environment_are_checked(monkeypatch, tmp_path):
    from tasks.errors import ConfigError

    monkeypatch.setenv("LEADER360V_LEASE_TTL_S", "nan")
    with pytest.raises(ConfigError, match="LEADER360V_LEASE_TTL_S"):
        with held_lease(LocalStore(tmp_path), KEY, what="w"):
            pass
    monkeypatch.setenv("LEADER360V_LEASE_TTL_S", "5")
    monkeypatch.setenv("LEADER360V_LEASE_WAIT_S", "-1")
    with pytest.raises(ConfigError, match="LEADER360V_LEASE_WAIT_S"):
        with held_lease(LocalStore(tmp_path), KEY, what="w"):
            pass


def test_an_orphan_of_this_process_is_taken_over_at_once(store, monkeypatch):
    """The store went away while the holder released (issue 12's fault test): the record stays,
    but a retry in the same process (`label`, Airflow's in-process retry) must not wait for it."""
    from tasks.errors import StoreError

    lease = store.acquire_lease(KEY, ttl_s=600)

    def unreachable(key):
        raise StoreError("the store is unreachable")

    with monkeypatch.context() as m:
        m.setattr(store, "delete", unreachable)
        with pytest.raises(StoreError):
            store.release_lease(lease)
    assert json.loads(store.get_bytes(KEY))["token"] == lease.token       # left behind
    t = time.monotonic()
    again = store.acquire_lease(KEY, ttl_s=30, wait_s=0)
    assert time.monotonic() - t < 2 and again.token != lease.token
    store.release_lease(again)
