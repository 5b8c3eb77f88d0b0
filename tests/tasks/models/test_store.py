"""The model store: import (atomic, manifest last), list, verify, and every bad input."""

from __future__ import annotations

import json

import pytest

from tasks.errors import EXIT_PERMANENT, EXIT_USAGE
from tasks.models import (
    ModelCorrupt,
    ModelImportError,
    ModelMismatch,
    ModelMissing,
    import_model,
    list_models,
    model_path,
    read_manifest,
    verify_model,
)
from tasks.models.manifest import file_sha256
from tasks.storage import LocalStore


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def test_import_writes_files_and_a_manifest_that_names_everything(store, hf_folder):
    m = import_model(store, hf_folder, "oneformer-ade20k", source="https://huggingface.co/x/y", license="mit")
    assert [f.path for f in m.files] == ["config.json", "model.safetensors", "preprocessor_config.json",
                                         "sub/tokenizer.json"]        # hidden .cache/ left out
    assert m.loader == "transformers.OneFormerForUniversalSegmentation"
    assert m.architecture == "OneFormerForUniversalSegmentation"
    assert (m.source, m.license) == ("https://huggingface.co/x/y", "mit")
    assert m.imported_by and m.imported_at.endswith("+00:00")
    weights = m.file("model.safetensors")
    assert weights.size == 300_000 and weights.sha256 == file_sha256(hf_folder / "model.safetensors")
    data = store.get_json("models/oneformer-ade20k/manifest.json")
    assert data["version"] == m.version and data["total_size"] == m.total_size
    for f in m.files:
        assert store.get_bytes(f"models/oneformer-ade20k/{m.version}/{f.path}") == (hf_folder / f.path).read_bytes()
    assert [x.name for x in list_models(store)] == ["oneformer-ade20k"]
    assert verify_model(store, "oneformer-ade20k").version == m.version


def test_interrupted_import_is_invisible_and_keeps_the_previous_version(store, hf_folder, monkeypatch, tmp_path):
    calls = {"n": 0}
    real_put_file = LocalStore.put_file

    def dies_on_third_file(self, key, path, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt   # the pod was stopped mid-copy
        return real_put_file(self, key, path, **kw)

    monkeypatch.setattr(LocalStore, "put_file", dies_on_third_file)
    with pytest.raises(KeyboardInterrupt):
        import_model(store, hf_folder, "m")
    assert read_manifest(store, "m") is None and list_models(store) == []
    with pytest.raises(ModelMissing, match="models import DIR --name m"):
        model_path("m", store=store, cache_dir=tmp_path / "c")

    monkeypatch.setattr(LocalStore, "put_file", real_put_file)
    first = import_model(store, hf_folder, "m")
    assert store.list_prefixes("models/m/") == [f"models/m/{first.version}/"]   # the partial copy is gone
    (hf_folder / "model.safetensors").write_bytes(b"new weights" * 1000)
    calls["n"] = 0
    monkeypatch.setattr(LocalStore, "put_file", dies_on_third_file)
    with pytest.raises(KeyboardInterrupt):
        import_model(store, hf_folder, "m")
    assert read_manifest(store, "m").version == first.version          # readers still see the old one
    assert verify_model(store, "m").version == first.version
    assert model_path("m", store=store, cache_dir=tmp_path / "c").name == first.version


def test_reimport_switches_version_and_drops_the_old_files(store, hf_folder):
    first = import_model(store, hf_folder, "m")
    (hf_folder / "model.safetensors").write_bytes(b"v2" * 5000)
    second = import_model(store, hf_folder, "m")
    assert second.version != first.version
    assert store.list_prefixes("models/m/") == [f"models/m/{second.version}/"]
    assert import_model(store, hf_folder, "m").version == second.version     # same files, same version


@pytest.mark.parametrize("tamper, problem", [
    ("flip", "model.safetensors has other content than was imported"),
    ("truncate", "model.safetensors has 299000 bytes, the manifest 300000"),
    ("delete", "model.safetensors is missing"),
])
def test_verify_names_the_tampered_file_and_exits_7_without_the_checksum(store, hf_folder, tamper, problem):
    m = import_model(store, hf_folder, "m")
    key = f"models/m/{m.version}/model.safetensors"
    data = store.get_bytes(key)
    if tamper == "flip":
        store.put_bytes(key, data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    elif tamper == "truncate":
        store.put_bytes(key, data[:299_000])
    else:
        store.delete(key)
    with pytest.raises(ModelCorrupt) as err:
        verify_model(store, "m")
    assert err.value.exit_code == EXIT_PERMANENT and not err.value.retryable
    assert problem in str(err.value) and "models import DIR --name m" in str(err.value)
    assert m.file("model.safetensors").sha256 not in str(err.value)
    assert m.file("model.safetensors").sha256[:12] not in str(err.value)


def test_missing_model_exits_2_with_the_import_command(store, tmp_path):
    with pytest.raises(ModelMissing) as err:
        verify_model(store, "sam2.1-hiera-large")
    assert err.value.exit_code == EXIT_USAGE
    assert "`python -m tasks models import DIR --name sam2.1-hiera-large`" in str(err.value)


def test_loader_that_contradicts_config_json_is_refused_before_anything_is_written(store, hf_folder):
    with pytest.raises(ModelMismatch, match="holds a OneFormerForUniversalSegmentation") as err:
        import_model(store, hf_folder, "m", loader="transformers.Mask2FormerForUniversalSegmentation")
    assert err.value.exit_code == EXIT_USAGE
    assert list(store.list("models/")) == []


@pytest.mark.parametrize("case", ["empty", "not_a_dir", "no_loader", "bad_name", "broken_link"])
def test_bad_folders_and_names_are_refused(store, tmp_path, case):
    d = tmp_path / "d"
    d.mkdir()
    name = "ok-name"
    if case == "not_a_dir":
        d = tmp_path / "missing"
    elif case == "no_loader":
        (d / "weights.bin").write_bytes(b"x")
    elif case == "bad_name":
        (d / "config.json").write_text(json.dumps({"architectures": ["X"]}))
        name = "../escape"
    elif case == "broken_link":
        (d / "config.json").write_text(json.dumps({"architectures": ["X"]}))
        (d / "weights.bin").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ModelImportError) as err:
        import_model(store, d, name)
    assert err.value.exit_code == EXIT_USAGE
    assert list(store.list("models/")) == []


def test_a_hand_edited_manifest_is_refused(store, hf_folder):
    import_model(store, hf_folder, "m")
    data = store.get_json("models/m/manifest.json")
    data["files"][1]["sha256"] = "0" * 64          # someone "fixed" a checksum by hand
    store.put_json("models/m/manifest.json", data)
    with pytest.raises(ModelMismatch, match="edited by hand"):
        read_manifest(store, "m")
    store.put_json("models/m/manifest.json", {**data, "name": "other"})
    with pytest.raises(ModelMismatch):
        read_manifest(store, "m")


def test_round_trip_through_an_s3_store(hf_folder, tmp_path):
    """The production store (MinIO/S3 protocol, on a loopback moto server)."""
    pytest.importorskip("moto")
    from tasks.storage.s3 import S3Store
    from tests.tasks.storage.conftest import FAST, start_moto, unique_bucket

    ep = start_moto()
    try:
        s3 = S3Store(unique_bucket("models"), endpoint=ep.endpoint, access_key="testing", secret_key="testing",
                     secure=False, create_bucket=True, **FAST)
        m = import_model(s3, hf_folder, "oneformer-coco")
        assert [x.name for x in list_models(s3)] == ["oneformer-coco"]
        verify_model(s3, "oneformer-coco")
        p = model_path("oneformer-coco", store=s3, cache_dir=tmp_path / "cache")
        assert (p / "model.safetensors").read_bytes() == (hf_folder / "model.safetensors").read_bytes()
        assert p.name == m.version
    finally:
        ep.server.stop()


def test_two_imports_of_one_name_at_once_leave_one_complete_model(store, hf_folder, tmp_path, monkeypatch):
    """Without one import per name at a time, the first to finish deleted the files the second was
    still copying, and the second's manifest then named deleted files."""
    import shutil
    import threading
    import time

    other = tmp_path / "other"
    shutil.copytree(hf_folder, other)
    (other / "model.safetensors").write_bytes(b"other weights" * 20_000)
    real_put_file = LocalStore.put_file

    def slow_put_file(self, key, path, **kw):   # a copy that takes a while, so the two overlap
        time.sleep(0.05)
        return real_put_file(self, key, path, **kw)

    monkeypatch.setattr(LocalStore, "put_file", slow_put_file)
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def go(folder):
        try:
            barrier.wait()
            results[folder.name] = import_model(store, folder, "m")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(f,)) for f in (hf_folder, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(results) == 2
    assert results[hf_folder.name].version != results[other.name].version
    final = verify_model(store, "m")                      # every file the manifest names is there, intact
    assert final.version in {r.version for r in results.values()}
    assert store.list_prefixes("models/m/") == [f"models/m/{final.version}/"]
    assert not list(store.list("leases/"))                # the lease was let go
