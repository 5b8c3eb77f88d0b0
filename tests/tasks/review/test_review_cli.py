"""``python -m tasks review``: show (also the old ``review --video-id``), export to CVAT and Label
Studio (read back by Label Studio's own converter), import with exit codes a script can act on."""

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tasks.cli import main
from tasks.formats import idmap as idmap_png
from tasks.stages import runner
from tasks.storage import LocalStore


@pytest.fixture
def store_copy(labeled_tiny, tmp_path):
    store, vid, run, _ = labeled_tiny
    shutil.copytree(store.root, tmp_path / "store")
    return tmp_path / "store", vid, run


def _out(capsys):
    return json.loads(capsys.readouterr().out)


def test_show_keeps_the_old_form_and_adds_the_checker(labeled_tiny, capsys):
    store, vid, run, _ = labeled_tiny
    assert main(["review", "--video-id", vid, "--store", str(store.root)]) == 0
    old = _out(capsys)
    assert old["run"] == run and old["flags"] and old["checker"]["comments"]
    assert main(["review", "show", "--video-id", vid, "--store", str(store.root)]) == 0
    assert _out(capsys)["checker"]["summary"] == old["checker"]["summary"]
    assert main(["review", "--store", str(store.root)]) == 2          # no video: a usage error


def test_labelstudio_export_is_read_back_by_label_studio_converter(labeled_tiny, tmp_path, capsys):
    from label_studio_converter.brush import decode_rle

    store, vid, run, _ = labeled_tiny
    assert main(["review", "export", "--video-id", vid, "--format", "labelstudio", "--out", str(tmp_path / "ls"),
                 "--store", str(store.root)]) == 0
    res = _out(capsys)
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert res["frames"] == len(tasks) == 16
    refine = runner.load_manifest(store, vid, run, "refine")
    labels = {lab.get("value") for lab in ET.parse(tmp_path / "ls" / "config.xml").getroot().iter("Label")}
    for t in (0, 9, 15):
        idm = idmap_png.decode_png(store.get_bytes(f"{runner.output_key(store, refine, 'idmaps')}{t:05d}.png"))
        task = tasks[t]
        assert (tmp_path / "ls" / task["data"]["image"].split("d=")[1]).exists()
        got = {}
        for r in task["predictions"][0]["result"]:
            h, w = r["original_height"], r["original_width"]
            rgba = decode_rle(r["value"]["rle"]).reshape(h, w, 4)
            got[r["meta"]["track_id"]] = rgba[:, :, 3] > 128
            assert r["value"]["brushlabels"][0] in labels and r["id"] == f"t{r['meta']['track_id']}"
        assert set(got) == set(np.unique(idm[idm > 0]).tolist())
        for k, m in got.items():
            assert np.array_equal(m, idm == k)


def test_cvat_round_trip_through_the_cli(store_copy, tmp_path, capsys):
    root, vid, run = store_copy
    assert main(["review", "export", "--video-id", vid, "--out", str(tmp_path / "cvat"), "--store", str(root)]) == 0
    res = _out(capsys)
    assert res["format"] == "cvat" and (tmp_path / "cvat" / "images" / "frame_000015.jpg").exists()
    xml = ET.parse(tmp_path / "cvat" / "annotations.xml").getroot()
    track = xml.find("track")
    track.set("label", "bench" if track.get("label") != "bench" else "car")
    for name in ("bench", "car"):
        ET.SubElement(ET.SubElement(xml.find("meta/task/labels"), "label"), "name").text = name
    ET.ElementTree(xml).write(tmp_path / "fixed.xml")
    assert main(["review", "import", str(tmp_path / "fixed.xml"), "--video-id", vid, "--author", "ana",
                 "--store", str(root)]) == 0
    r = _out(capsys)
    assert r["status"] == "imported" and r["base_run"] == run and r["run"] != run
    assert runner.load_manifest(LocalStore(root), vid, r["run"], "validate") is not None
    # the unchanged export: refused with the problem named, exit 2
    assert main(["review", "import", str(tmp_path / "cvat" / "annotations.xml"), "--video-id", vid,
                 "--run", run, "--store", str(root)]) == 2
    assert "changes nothing" in capsys.readouterr().err
    assert main(["review", "import", str(tmp_path / "missing.xml"), "--video-id", vid, "--store", str(root)]) == 2
