"""model_path: from the store through a verified local cache, or from a mounted models folder."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from tasks.models import ModelCorrupt, ModelMismatch, ModelMissing, import_model, model_path, resolve_model
from tasks.models.resolve import default_cache_dir
from tasks.storage import LocalStore


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


class CountingStore(LocalStore):
    def __init__(self, root):
        super().__init__(root)
        self.fetched: list[str] = []

    def get_file(self, key, path):
        self.fetched.append(key)
        return super().get_file(key, path)


def test_downloads_once_then_reuses_the_verified_cache(tmp_path, hf_folder):
    store = CountingStore(tmp_path / "store")
    m = import_model(store, hf_folder, "voter")
    p = model_path("voter", store=store, cache_dir=tmp_path / "cache")
    assert p == tmp_path / "cache" / "voter" / m.version
    assert sorted(f.relative_to(p).as_posix() for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")) \
        == [f.path for f in m.files]
    assert len(store.fetched) == len(m.files)
    assert model_path("voter", store=store, cache_dir=tmp_path / "cache") == p
    assert len(store.fetched) == len(m.files)                  # nothing fetched again
    assert not [x for x in (tmp_path / "cache" / "voter").iterdir() if x.name.startswith(".tmp-")]


def test_default_cache_dir_comes_from_the_environment(monkeypatch, tmp_path, store, hf_folder):
    monkeypatch.setenv("LEADER360V_MODEL_CACHE", str(tmp_path / "pod-disk"))
    assert default_cache_dir() == tmp_path / "pod-disk"
    import_model(store, hf_folder, "voter")
    assert model_path("voter", store=store).parent.parent == tmp_path / "pod-disk"
    monkeypatch.delenv("LEADER360V_MODEL_CACHE")
    assert default_cache_dir() == default_cache_dir().home() / ".cache" / "leader360v" / "models"


def test_a_cached_file_changed_on_disk_is_fetched_again(tmp_path, hf_folder):
    store = CountingStore(tmp_path / "store")
    m = import_model(store, hf_folder, "voter")
    p = model_path("voter", store=store, cache_dir=tmp_path / "cache")
    good = (p / "model.safetensors").read_bytes()
    (p / "model.safetensors").write_bytes(b"\0" * len(good))           # disk corruption, same size
    os.utime(p / "model.safetensors", ns=(1, 1))
    n = len(store.fetched)
    assert model_path("voter", store=store, cache_dir=tmp_path / "cache") == p
    assert (p / "model.safetensors").read_bytes() == good
    assert len(store.fetched) == n + len(m.files)
    os.remove(p / "config.json")                                      # a file deleted from the cache
    assert (model_path("voter", store=store, cache_dir=tmp_path / "cache") / "config.json").is_file()


def test_a_corrupt_store_copy_fails_exit_7_naming_the_file_and_caches_nothing(tmp_path, store, hf_folder):
    m = import_model(store, hf_folder, "voter")
    key = f"models/voter/{m.version}/model.safetensors"
    store.put_bytes(key, b"x" + store.get_bytes(key)[1:])
    with pytest.raises(ModelCorrupt) as err:
        model_path("voter", store=store, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == 7
    assert "model.safetensors has other content" in str(err.value)
    assert m.file("model.safetensors").sha256 not in str(err.value)
    assert not (tmp_path / "cache" / "voter" / m.version).exists()
    assert not [x for x in (tmp_path / "cache" / "voter").iterdir()]   # no half-filled folder left
    store.delete(key)
    with pytest.raises(ModelCorrupt, match="model.safetensors is missing"):
        model_path("voter", store=store, cache_dir=tmp_path / "cache")


def test_missing_model_names_the_import_to_run(tmp_path, store, monkeypatch):
    monkeypatch.setenv("LEADER360V_MODELS_DIR", str(tmp_path / "mnt"))
    with pytest.raises(ModelMissing) as err:
        model_path("oneformer-cityscapes", store=store, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == 2
    msg = str(err.value)
    assert "`python -m tasks models import DIR --name oneformer-cityscapes`" in msg and "mnt" in msg


def test_loader_of_another_architecture_is_refused(tmp_path, store, hf_folder):
    import_model(store, hf_folder, "voter")
    assert resolve_model("voter", store=store, cache_dir=tmp_path / "c",
                         loader="OneFormerForUniversalSegmentation").manifest.name == "voter"
    with pytest.raises(ModelMismatch, match="imported for transformers.OneFormerForUniversalSegmentation") as err:
        model_path("voter", store=store, cache_dir=tmp_path / "c",
                   loader="transformers.Mask2FormerForUniversalSegmentation")
    assert err.value.exit_code == 2


def test_mounted_copy_of_the_models_folder_is_used_and_checked(tmp_path, store, hf_folder, monkeypatch):
    m = import_model(store, hf_folder, "voter")
    mount = tmp_path / "mnt"
    shutil.copytree(store.path("models"), mount)            # e.g. `mc mirror bucket/models /mnt/models`
    monkeypatch.setenv("LEADER360V_MODELS_DIR", str(mount))
    res = resolve_model("voter", store=None, cache_dir=tmp_path / "cache")
    assert res.origin == "mounted" and res.path == mount / "voter" / m.version
    assert not (tmp_path / "cache").exists()                 # nothing copied
    (mount / "voter" / m.version / "model.safetensors").write_bytes(b"\1" * 300_000)
    with pytest.raises(ModelCorrupt, match="mounted folder") as err:
        model_path("voter", cache_dir=tmp_path / "cache")
    assert "model.safetensors has other content" in str(err.value)
    # a model the mount lacks comes from the store
    import_model(store, hf_folder, "other")
    assert model_path("other", store=store, cache_dir=tmp_path / "cache").parent.parent == tmp_path / "cache"


def test_concurrent_first_loads_share_one_verified_folder(tmp_path, store, hf_folder):
    import_model(store, hf_folder, "voter")
    out, errors = [], []

    def load():
        try:
            out.append(model_path("voter", store=LocalStore(tmp_path / "store"), cache_dir=tmp_path / "cache"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(out)) == 1
    assert json.loads((out[0] / ".l360-manifest.json").read_text())["name"] == "voter"
