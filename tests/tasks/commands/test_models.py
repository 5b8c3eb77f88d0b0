"""`python -m tasks models import|list|verify` as a user runs it: exit codes and messages."""

from __future__ import annotations

import json
import os

from tasks.cli import main


def _folder(tmp_path):
    d = tmp_path / "snapshot"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["Mask2FormerForUniversalSegmentation"]}))
    (d / "model.safetensors").write_bytes(os.urandom(50_000))
    return d


def test_import_list_verify_and_a_tampered_file(tmp_path, capsys):
    store = str(tmp_path / "store")
    src = _folder(tmp_path)
    assert main(["models", "import", str(src), "--name", "m2f-coco", "--store", store,
                 "--source", "https://huggingface.co/facebook/mask2former-swin-large-coco-panoptic",
                 "--license", "cc-by-nc-4.0"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["name"] == "m2f-coco" and imported["loader"] == "transformers.Mask2FormerForUniversalSegmentation"
    assert imported["files"] == 2 and imported["size_bytes"] > 50_000 and imported["license"] == "cc-by-nc-4.0"

    assert main(["models", "list", "--store", store]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["m2f-coco"]
    assert main(["models", "verify", "--store", store]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "m2f-coco", "ok": True}]

    weights = tmp_path / "store" / "models" / "m2f-coco" / imported["version"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[123] ^= 0x40
    weights.write_bytes(bytes(data))
    assert main(["models", "verify", "m2f-coco", "--store", store]) == 7
    out = capsys.readouterr()
    assert json.loads(out.out)[0]["ok"] is False
    assert "model.safetensors has other content than was imported" in out.err
    assert "models import DIR --name m2f-coco" in out.err
    manifest = json.loads((tmp_path / "store" / "models" / "m2f-coco" / "manifest.json").read_text())
    assert manifest["files"][1]["sha256"] not in out.err + out.out


def test_bad_imports_exit_2_with_what_to_do(tmp_path, capsys):
    store = str(tmp_path / "store")
    src = _folder(tmp_path)
    assert main(["models", "import", str(src), "--name", "x", "--store", store,
                 "--loader", "transformers.OneFormerForUniversalSegmentation"]) == 2
    assert "--loader transformers.Mask2FormerForUniversalSegmentation" in capsys.readouterr().err
    assert main(["models", "import", str(tmp_path / "nope"), "--name", "x", "--store", store]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["models", "verify", "absent", "--store", store]) == 2
    assert "models import DIR --name absent" in capsys.readouterr().err
