"""``review import`` on a labeled run: a correction becomes a new, re-checked run; every bad input
is refused with its problem named and nothing stored; an interrupted import is invisible and its
retry gives the same run; two imports for one video are serialised."""

import json
import shutil
import threading
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tasks import layout
from tasks.errors import CorrectionRejected, LeaseHeld
from tasks.formats import idmap as idmap_png
from tasks.formats import rle as rlemod
from tasks.review import corrections as cmod
from tasks.review.export import export_cvat
from tasks.review.revise import import_corrections, import_lease_key, revised_config
from tasks.stages import runner
from tasks.storage import LocalStore
from tasks.storage.lease import held_lease


@pytest.fixture
def run_store(labeled_tiny, tmp_path):
    """A private copy of the labeled tiny clip's store (imports add runs and corrections to it)."""
    store, vid, run, _ = labeled_tiny
    shutil.copytree(store.root, tmp_path / "store")
    return LocalStore(tmp_path / "store"), vid, run


@pytest.fixture(scope="module")
def exported(labeled_tiny, tmp_path_factory):
    store, vid, run, _ = labeled_tiny
    out = tmp_path_factory.mktemp("cvat")
    export_cvat(store, vid, run, out)
    return (out / "annotations.xml").read_bytes(), json.loads((out / "release.json").read_text())


def _tracks_by_id(root):
    out = {}
    for tr in root.findall("track"):
        tid = int(tr.find("mask").find("attribute[@name='track_id']").text)
        out[tid] = tr
    return out


def _with_label(root, name):
    labels = root.find("meta/task/labels")
    if name not in {lab.findtext("name") for lab in labels}:
        el = ET.SubElement(labels, "label")
        ET.SubElement(el, "name").text = name
        ET.SubElement(el, "type").text = "mask"


def _idmap(store, vid, run, f):
    m = runner.load_manifest(store, vid, run, "refine")
    return idmap_png.decode_png(store.get_bytes(f"{runner.output_key(store, m, 'idmaps')}{f:05d}.png"))


def _unknown_track(store, vid, run):
    flags = store.get_json(runner.output_key(store, runner.load_manifest(store, vid, run, "qa"), "flags"))["flags"]
    return next(f["track"] for f in flags if f["type"] == "unknown_label")


def test_class_correction_is_a_new_rechecked_run(run_store, exported, monkeypatch):
    store, vid, run = run_store
    xml, _ = exported
    tid = _unknown_track(store, vid, run)
    root = ET.fromstring(xml)
    _tracks_by_id(root)[tid].set("label", "bench")
    _with_label(root, "bench")
    monkeypatch.setenv("LEADER360V_REVIEWER", "ana")
    r = import_corrections(store, vid, ET.tostring(root), source_name="annotations.xml")
    assert r.status == "imported" and r.base_run == run and r.run != run
    cfg = runner.load_run_config(store, vid, r.run)
    assert cfg.review.revision_of == run and cfg.review.corrections == (r.correction,)
    assert cfg.hash == r.run                                         # the hash includes the corrections
    before = runner.load_manifest(store, vid, run, "qa")["stats"]["flags"]
    assert r.qa_flags["unknown_label"] == before["unknown_label"] - 1   # re-checked by QA
    assert runner.load_manifest(store, vid, r.run, "validate") is not None   # and by the suites
    doc = store.get_json(runner.output_key(store, runner.load_manifest(store, vid, r.run, "qa"), "annotations"))
    names = {c["id"]: c["name"] for c in doc["categories"]}
    ann = next(a for a in doc["annotations"] if a["track_id"] == tid)
    assert names[ann["category_id"]] == "bench"
    assert ann["provenance"]["machine_category"] == "unknown" and ann["provenance"]["human"]["by"] == ["ana"]
    [rec] = cmod.committed(store, vid)
    assert rec["author"] == "ana" and rec["imported_at"] and rec["revised_run"] == r.run
    assert rec["changed_classes"] == {str(tid): "bench"} and rec["source_name"] == "annotations.xml"
    # the same file again: the same correction and run, nothing new
    again = import_corrections(store, vid, ET.tostring(root), source_name="annotations.xml")
    assert (again.status, again.run, again.correction) == ("already imported", r.run, r.correction)


def test_frame_correction_refollowed_both_ways_keeping_ids(run_store, exported):
    """Frame 8 corrected with two tracks' ids exchanged: the exchange is carried forward to the
    end and backward to the start (the earlier run never agrees with it), every other id stays."""
    store, vid, run = run_store
    _, release = exported
    base8 = _idmap(store, vid, run, 8)
    ids, counts = np.unique(base8[base8 > 0], return_counts=True)
    everywhere = set(np.unique(_idmap(store, vid, run, 0))) & set(np.unique(_idmap(store, vid, run, 15)))
    mid = [int(x) for x in ids[np.argsort(-counts)][2:] if x in everywhere]
    a, b = mid[0], mid[1]                                      # two mid-sized objects seen from start to end
    doc = json.loads(json.dumps(release))
    for ann in doc["annotations"]:
        ann["segmentations"] = [s if f == 8 else None for f, s in enumerate(ann["segmentations"])]
        if ann["track_id"] in (a, b):
            ann["track_id"] = b if ann["track_id"] == a else a
    cats = {ann["track_id"]: ann["category_id"] for ann in release["annotations"]}
    for ann in doc["annotations"]:                           # classes follow the object, not the id
        ann["category_id"] = cats[ann["track_id"]]
    r = import_corrections(store, vid, json.dumps(doc).encode(), source_name="fix.json")
    assert r.frames == [8]
    spans = {s["direction"]: s for s in r.refollowed}
    assert spans["forward"]["tracks"] == sorted((a, b)) and spans["forward"]["frames"][1] > 8
    assert spans["backward"]["frames"][0] < 8
    new8 = _idmap(store, vid, r.run, 8)
    assert np.array_equal(new8[base8 == a], np.full((base8 == a).sum(), b, np.uint16))
    for f in (spans["backward"]["frames"][0], spans["forward"]["frames"][1]):
        old, new = _idmap(store, vid, run, f), _idmap(store, vid, r.run, f)
        was_a, was_b = old == a, old == b       # the exchange is carried: a's object now mostly carries b
        assert np.count_nonzero(new[was_a] == b) > np.count_nonzero(new[was_a] == a), f
        assert np.count_nonzero(new[was_b] == a) > np.count_nonzero(new[was_b] == b), f
        others = ~np.isin(old, [a, b]) & ~np.isin(new, [a, b])
        assert np.array_equal(old[others], new[others])                        # every other id kept
    tracks = store.get_json(runner.output_key(store, runner.load_manifest(store, vid, r.run, "refine"), "tracks"))
    assert tracks["tracks"][str(a)]["provenance"]["human"]["frames"] == [8]


def _release_with(release, **video):
    doc = json.loads(json.dumps(release))
    doc["videos"][0].update(video)
    return doc


@pytest.mark.parametrize("case", ["other_video_json", "other_video_cvat", "size", "frame_out_of_range", "unknown_label",
                                  "overlap", "changes_class", "interpolated", "polygon"])
def test_bad_corrections_are_refused_with_the_problem_and_nothing_stored(run_store, exported, case):
    store, vid, run = run_store
    xml, release = exported
    root = ET.fromstring(xml)
    tracks = _tracks_by_id(root)
    t1, t2 = sorted(tracks)[:2]
    if case == "other_video_json":
        data, expect = json.dumps(_release_with(release, video_uid="f" * 16)).encode(), "for video ffff"
    elif case == "other_video_cvat":
        root.find("meta/task/name").text = f"leader360v {'e' * 16} run {run}"
        data, expect = ET.tostring(root), "corrections for another video"
    elif case == "size":
        root.find("meta/task/original_size/width").text = "512"
        data, expect = ET.tostring(root), "frames are 512x128"
    elif case == "frame_out_of_range":
        m = ET.SubElement(tracks[t1], "mask", dict(tracks[t1].find("mask").attrib, frame="99"))
        ET.SubElement(m, "attribute", name="track_id").text = str(t1)
        data, expect = ET.tostring(root), "frame 99 is out of range"
    elif case == "unknown_label":
        tracks[t1].set("label", "flying saucer")
        data, expect = ET.tostring(root), "label 'flying saucer' is not in the vocabulary"
    elif case == "overlap":
        doc = json.loads(json.dumps(release))
        a0 = doc["annotations"][0]
        f = next(i for i, s in enumerate(a0["segmentations"]) if s)
        other = doc["annotations"][1]
        other["segmentations"][f] = rlemod.encode(rlemod.decode(a0["segmentations"][f]) | rlemod.decode(other["segmentations"][f])
                                                  if other["segmentations"][f] else rlemod.decode(a0["segmentations"][f]))
        data, expect = json.dumps(doc).encode(), "overlap"
    elif case == "changes_class":
        dup = ET.fromstring(ET.tostring(tracks[t1]))
        dup.set("label", "bench" if tracks[t1].get("label") != "bench" else "car")
        for m in dup.findall("mask"):
            m.set("frame", str(int(m.get("frame"))))
        root.append(dup)
        _with_label(root, "bench")
        _with_label(root, "car")
        data, expect = ET.tostring(root), f"track {t1} changes class"
    elif case == "interpolated":
        tracks[t2].find("mask").set("keyframe", "0")
        data, expect = ET.tostring(root), r"interpolated \(keyframe=0\)"
    else:
        poly = ET.SubElement(tracks[t2], "polygon", frame="3", keyframe="1", outside="0", points="1,1;9,1;9,9")
        ET.SubElement(poly, "attribute", name="track_id").text = str(t2)
        data, expect = ET.tostring(root), "only masks are labels"
    runs_before = store.list_prefixes(layout.video_prefix(vid) + "runs/")
    with pytest.raises(CorrectionRejected, match=expect) as err:
        import_corrections(store, vid, data, source_name="bad")
    assert err.value.exit_code == 2 and err.value.problems
    assert cmod.committed(store, vid) == [] and store.list_prefixes(cmod.corrections_prefix(vid)) == []
    assert store.list_prefixes(layout.video_prefix(vid) + "runs/") == runs_before


def _class_fix(xml, store, vid, run, label="bench", which=0):
    root = ET.fromstring(xml)
    flags = store.get_json(runner.output_key(store, runner.load_manifest(store, vid, run, "qa"), "flags"))["flags"]
    tid = [f["track"] for f in flags if f["type"] == "unknown_label"][which]
    _tracks_by_id(root)[tid].set("label", label)
    _with_label(root, label)
    return ET.tostring(root)


def test_interrupted_import_is_invisible_and_retry_gives_the_same_run(run_store, exported):
    store, vid, run = run_store
    data = _class_fix(exported[0], store, vid, run)

    for where in ("payload", "refollow"):
        def boom(step, where=where):
            if step == where:
                raise KeyboardInterrupt(f"killed at {step}")

        with pytest.raises(KeyboardInterrupt):
            import_corrections(store, vid, data, source_name="a.xml", _interrupt=boom)
        assert cmod.committed(store, vid) == []               # nothing visible: no correction,
        assert store.list_prefixes(cmod.corrections_prefix(vid)) == []
        assert store.list_prefixes(layout.video_prefix(vid) + "runs/") == [layout.run_prefix(vid, run)]   # no run
    r = import_corrections(store, vid, data, source_name="a.xml")
    assert r.status == "imported"
    root_cfg = runner.load_run_config(store, vid, run)
    assert r.run == revised_config(root_cfg, run, [r.correction]).hash
    assert [c["id"] for c in cmod.committed(store, vid)] == [r.correction]


def test_two_imports_for_one_video_are_serialised(run_store, exported, monkeypatch):
    store, vid, run = run_store
    first, second = _class_fix(exported[0], store, vid, run, which=0), _class_fix(exported[0], store, vid, run, "car", 1)
    monkeypatch.setenv("LEADER360V_LEASE_WAIT_S", "0")
    with held_lease(store, import_lease_key(vid), what="someone else's import", wait_s=0):
        with pytest.raises(LeaseHeld, match="corrections import of video .* is being written"):
            import_corrections(store, vid, first, source_name="a.xml")
    assert cmod.committed(store, vid) == []
    monkeypatch.setenv("LEADER360V_LEASE_WAIT_S", "120")
    results, errors = [], []

    def go(data, name):
        try:
            results.append(import_corrections(store, vid, data, source_name=name, run=run))
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(d, n)) for d, n in ((first, "a.xml"), (second, "b.xml"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    done = cmod.committed(store, vid)
    assert len(done) == 2
    assert done[1]["applies"] == [done[0]["id"], done[1]["id"]]    # the second built on the first
    last = runner.load_run_config(store, vid, done[1]["revised_run"])
    assert last.review.corrections == tuple(done[1]["applies"])


def test_object_drawn_without_an_id_gets_a_new_one(run_store, exported):
    """A track drawn in CVAT carries no track_id: it becomes a new object with an id no track of the
    run ever had, marked human."""
    store, vid, run = run_store
    root = ET.fromstring(exported[0])
    tid = _unknown_track(store, vid, run)
    for m in _tracks_by_id(root)[tid].findall("mask"):
        for a in m.findall("attribute[@name='track_id']"):
            m.remove(a)
    r = import_corrections(store, vid, ET.tostring(root), source_name="drawn.xml")
    base_tracks = store.get_json(runner.output_key(store, runner.load_manifest(store, vid, run, "refine"), "tracks"))
    new_id = max(int(k) for k in base_tracks["tracks"]) + 1
    [rec] = cmod.committed(store, vid)
    assert rec["new_tracks"] == [new_id]
    tracks = store.get_json(runner.output_key(store, runner.load_manifest(store, vid, r.run, "refine"), "tracks"))
    assert tracks["tracks"][str(new_id)]["origin"] == "human"
    f = rec["frames"][0]
    old, new = _idmap(store, vid, run, f), _idmap(store, vid, r.run, f)
    assert np.array_equal(new == new_id, old == tid) and not (new == tid).any()
