"""Fuzz: object-store keys and the upload key rules under random text.

:func:`tasks.storage.base.check_key` either returns the key or raises
:class:`~tasks.errors.InvalidKey` (exit 2); a local store given any key either stays inside its
folder or refuses with a typed error; ``upload --key`` exits 0 (inside ``raw/`` or ``models/``)
or 2, and writes nothing outside the store (issue 12 §4, §7: ``raw/../../x.mp4`` gave a traceback).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.cli import main
from tasks.errors import InvalidKey, ObjectNotFound, PipelineError
from tasks.storage import LocalStore
from tasks.storage.base import check_key

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

segments = st.one_of(st.sampled_from(["raw", "models", "videos", "releases", "..", ".", "", "a", "clip.mp4",
                                      "x\\y", "\x00", " ", "é", "a" * 300]),
                     st.text(max_size=8))
keys = st.one_of(st.lists(segments, min_size=1, max_size=5).map("/".join), st.text(max_size=40))


def _inside(root: Path, path: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


@FUZZ
@given(keys)
def test_check_key_returns_the_key_or_raises_invalid_key(key):
    try:
        assert check_key(key) == key
    except InvalidKey as exc:
        assert exc.exit_code == 2 and isinstance(exc, ValueError)
        return
    parts = key.split("/")
    assert not key.startswith("/") and "\\" not in key and ".." not in parts[:-1] + [parts[-1]]


@FUZZ
@given(keys, st.binary(max_size=16))
def test_a_local_store_stays_in_its_folder(key, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = LocalStore(root)
        try:
            store.put_bytes(key, data)
        except InvalidKey:
            assert not any(Path(tmp).rglob("*")) or all(_inside(root, p) or p == root for p in Path(tmp).rglob("*"))
            return
        written = [p for p in Path(tmp).rglob("*") if p.is_file()]
        assert written and all(_inside(root, p) for p in written)
        assert store.get_bytes(key) == data
        try:
            store.get_bytes(key + "x")
        except (ObjectNotFound, InvalidKey):
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys)
def test_upload_key_rules(key):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "in.bin"
        src.write_bytes(b"bytes")
        store = tmp / "store"
        try:
            code = main(["upload", str(src), "--key", key, "--store", str(store)])
        except PipelineError as exc:   # pragma: no cover - main turns these into exit codes
            raise AssertionError(f"escaped main: {exc!r}") from exc
        except SystemExit as exc:      # argparse: a key that looks like an option ("-x")
            assert exc.code == 2
            return
        assert code in (0, 2)
        outside = [p for p in tmp.rglob("*") if p.is_file() and p != src and not _inside(store, p)]
        assert not outside, f"{key!r} wrote {outside}"
        if code == 0:
            assert key.startswith(("raw/", "models/")) and (store / key).is_file()
