"""`upload` (issue 12 point 4): no overwrite without --overwrite, nothing outside raw/ and models/."""

from __future__ import annotations

import json

import pytest

from tasks.cli import main
from tasks.storage import LocalStore


@pytest.fixture
def files(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"first video bytes")
    b.write_bytes(b"another video, same name")
    return a, b


def test_an_existing_key_is_not_overwritten_without_overwrite(tmp_path, files, capsys):
    a, b = files
    store = LocalStore(tmp_path / "store")
    args = ["--key", "raw/clip.mp4", "--store", str(store.root)]
    assert main(["upload", str(a), *args]) == 0
    assert main(["upload", str(b), *args]) == 2
    assert "already exists" in capsys.readouterr().err
    assert store.get_bytes("raw/clip.mp4") == a.read_bytes()
    assert main(["upload", str(a), *args]) == 0               # the very same bytes again: fine (make demo twice)
    assert main(["upload", str(b), *args, "--overwrite"]) == 0
    assert store.get_bytes("raw/clip.mp4") == b.read_bytes()


@pytest.mark.parametrize("key", ["releases/v3/annotations.json", "videos/0123456789abcdef/source.json",
                                 "quarantine/x.json", "raw/", "raw/../releases/v1/x.json", "raw\\clip.mp4",
                                 "/abs/raw/clip.mp4"])
def test_keys_outside_raw_and_models_are_refused(tmp_path, files, capsys, key):
    store = LocalStore(tmp_path / "store")
    store.put_bytes("releases/v3/annotations.json", b"published")
    assert main(["upload", str(files[0]), "--key", key, "--store", str(store.root), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("upload:") and "Traceback" not in err
    assert store.get_bytes("releases/v3/annotations.json") == b"published"
    assert {i.key for i in store.list("")} == {"releases/v3/annotations.json"}


def test_checkpoints_go_under_models(tmp_path, files, capsys):
    store = LocalStore(tmp_path / "store")
    assert main(["upload", str(files[0]), "--key", "models/sam2/tiny.pt", "--store", str(store.root)]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == "models/sam2/tiny.pt"
