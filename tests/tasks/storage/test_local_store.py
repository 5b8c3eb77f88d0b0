import threading

import pytest

from tasks.errors import ObjectNotFound
from tasks.storage import LocalStore, open_store


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "s")


def test_round_trip_list_delete(store, tmp_path):
    store.put_bytes("a/b/c.bin", b"123")
    store.put_json("a/x.json", {"k": "é"})
    assert store.get_bytes("a/b/c.bin") == b"123"
    assert store.get_json("a/x.json") == {"k": "é"}
    assert [i.key for i in store.list("a/")] == ["a/b/c.bin", "a/x.json"]
    assert [i.key for i in store.list("a/b")] == ["a/b/c.bin"]  # partial prefix, as S3
    assert store.list_prefixes("a/") == ["a/b/"]
    assert store.stat("a/b/c.bin").size == 3
    store.delete("a/b/c.bin")
    assert not store.exists("a/b/c.bin") and store.list_prefixes("a/") == []  # empty folders pruned
    with pytest.raises(ObjectNotFound):
        store.get_bytes("a/b/c.bin")
    src = tmp_path / "f.txt"
    src.write_text("file")
    store.put_file("raw/ünïcode näme.mp4", src)
    with store.local_file("raw/ünïcode näme.mp4") as p:
        assert p.read_text() == "file"
    assert store.key_from_uri(store.uri("raw/ünïcode näme.mp4")) == "raw/ünïcode näme.mp4"
    assert store.key_from_uri(store.uri("raw/")) == "raw/"  # a prefix stays a prefix


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a\\b", "./a"])
def test_bad_keys_rejected(store, key):
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")


def test_writes_are_atomic_and_leave_no_temp_files(store):
    store.put_bytes("k", b"old")
    store.put_bytes("k", b"new" * 1000)
    assert store.get_bytes("k") == b"new" * 1000
    assert [i.key for i in store.list("")] == ["k"]


def test_put_if_absent_has_one_winner(store):
    wins = []

    def claim(i):
        wins.append(store.put_if_absent("claim", str(i).encode()))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert store.get_bytes("claim").decode() in {str(i) for i in range(8)}


def test_open_store_urls(tmp_path):
    assert isinstance(open_store(f"file://{tmp_path}/x"), LocalStore)
    assert isinstance(open_store(tmp_path / "y"), LocalStore)
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported store URL"):
        open_store("ftp://host/bucket")
