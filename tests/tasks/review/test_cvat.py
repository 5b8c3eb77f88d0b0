"""CVAT for video 1.1 XML: what the export writes is what a CVAT reader reads.

The XML is read back with xmltodict and every mask decoded with pycocotools (CVAT's ``rle`` is
an uncompressed COCO RLE of the mask's box, row-major, i.e. pycocotools' column-major of the
transposed box -- how datumaro decodes it). datumaro itself is not used: it cannot be installed
beside this project's pins (it requires opencv-python-headless<5, pandas~=2.3, pillow~=12,
cachetools~=7) and its CVAT importer (1.13.12) fails on a ``<mask>`` inside a video ``<track>``
(it reads the frame size from an ``<image>`` element, which a video dump does not have).
"""

import numpy as np
import pytest
import xmltodict
from pycocotools import mask as coco

from tasks.review import cvat


def _decode_like_cvat(shape: dict, h: int, w: int) -> np.ndarray:
    bw, bh = int(shape["@width"]), int(shape["@height"])
    counts = [int(x) for x in shape["@rle"].split(",")]
    box = coco.decode(coco.frPyObjects({"counts": counts, "size": [bw, bh]}, bw, bh)).T.astype(bool)
    out = np.zeros((h, w), bool)
    top, left = int(shape["@top"]), int(shape["@left"])
    out[top:top + bh, left:left + bw] = box
    return out


def _scene():
    h, w = 32, 64
    maps = []
    for t in range(4):
        m = np.zeros((h, w), np.uint16)
        m[5:12, 10 + t:20 + t] = 7               # a moving object
        m[20:30, :3] = 12                        # an object across the left/right seam
        m[20:30, w - 4:] = 12
        if t < 2:
            m[0, 0] = 3                          # one pixel in a corner, gone from frame 2
        if t == 3:
            m[14:18, 30:40] = 9                  # appears on the last frame
        maps.append(m)
    tracks = {7: cvat.ExportTrack(7, "person", "possible ID switch at frame 2", {2}),
              12: cvat.ExportTrack(12, "car"), 3: cvat.ExportTrack(3, "unknown"), 9: cvat.ExportTrack(9, "bench")}
    return h, w, maps, tracks


def test_rle_round_trip_and_seam_mask():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((17, 40)) > 0.6
        rle, left, top, bw, bh = cvat.mask_to_rle(m)
        assert np.array_equal(cvat.rle_to_mask(rle, left, top, bw, bh, 17, 40), m)
        shape = {"@rle": rle, "@left": left, "@top": top, "@width": bw, "@height": bh}
        assert np.array_equal(_decode_like_cvat(shape, 17, 40), m)
    assert cvat.mask_to_rle(np.zeros((4, 8), bool)) is None
    with pytest.raises(ValueError, match="covers"):
        cvat.rle_to_mask("1,2", 0, 0, 2, 2, 4, 8)
    with pytest.raises(ValueError, match="outside"):
        cvat.rle_to_mask("0,4", 7, 0, 2, 2, 4, 8)


def test_export_read_by_xmltodict_same_masks_ids_keyframes():
    h, w, maps, tracks = _scene()
    xml = cvat.build_xml(name="leader360v 0123456789abcdef run 0123456789ab", source="s", width=w, height=h,
                         length=4, labels=[t.label for t in tracks.values()], idmaps=maps, tracks=tracks,
                         frame_notes={1: "coverage dip on frames 1–2"})
    doc = xmltodict.parse(xml, force_list=("track", "mask", "attribute", "label", "tag"))["annotations"]
    assert doc["version"] == "1.1"
    task = doc["meta"]["task"]
    assert task["mode"] == "interpolation" and int(task["size"]) == 4
    assert (int(task["original_size"]["width"]), int(task["original_size"]["height"])) == (w, h)
    labels = {lab["name"] for lab in task["labels"]["label"]}
    assert {"person", "car", "unknown", "bench", cvat.NOTE_LABEL} <= labels
    got = {}
    for tr in doc["track"]:
        for sh in tr["mask"]:
            assert sh["@keyframe"] == "1"            # CVAT never interpolates between our shapes
            attrs = {a["@name"]: a.get("#text") for a in sh["attribute"]}
            tid = int(attrs["track_id"])
            f = int(sh["@frame"])
            if sh["@outside"] == "1":
                got.setdefault(tid, {})[f] = None
                continue
            got.setdefault(tid, {})[f] = (tr["@label"], _decode_like_cvat(sh, h, w), attrs.get("review_comment"))
    for t, m in enumerate(maps):
        for tid in np.unique(m[m > 0]):
            label, mask, _ = got[int(tid)][t]
            assert label == tracks[int(tid)].label
            assert np.array_equal(mask, m == tid)     # the seam object is one mask, both sides
    assert got[3][2] is None and 3 not in got[3]     # ends with an outside keyframe, nothing after
    assert got[7][2][2] == "possible ID switch at frame 2" and not got[7][1][2]
    assert doc["tag"][0]["@frame"] == "1" and doc["tag"][0]["attribute"][0]["#text"].startswith("coverage dip")


def test_parse_reads_back_own_export():
    h, w, maps, tracks = _scene()
    xml = cvat.build_xml(name="n", source="s", width=w, height=h, length=4, labels=["person", "car", "unknown", "bench"],
                         idmaps=maps, tracks=tracks)
    task = cvat.parse_xml(xml)
    assert task.problems == [] and (task.width, task.height, task.size) == (w, h, 4)
    for label, tid, shapes in task.tracks:
        assert label == tracks[tid].label
        for f, m in shapes:
            if m is not None:
                assert np.array_equal(m, maps[f] == tid)


def _edit(xml: bytes, old: str, new: str) -> bytes:
    assert old.encode() in xml
    return xml.replace(old.encode(), new.encode(), 1)


def test_parse_lists_every_bad_shape():
    h, w, maps, tracks = _scene()
    xml = cvat.build_xml(name="n", source="s", width=w, height=h, length=4, labels=["person", "car", "unknown", "bench"],
                         idmaps=maps, tracks=tracks)
    bad = _edit(xml, 'keyframe="1"', 'keyframe="0"')
    bad = _edit(bad, "</annotations>", '<track id="9" label="car"><polygon frame="0" keyframe="1" outside="0" '
                                        'points="1,1;5,1;5,5" /></track></annotations>')
    bad = _edit(bad, "</annotations>", '<image id="0" name="a.jpg" width="64" height="32" /></annotations>')
    problems = cvat.parse_xml(bad).problems
    assert any("interpolated (keyframe=0)" in p for p in problems)
    assert any("<polygon>" in p and "only masks" in p for p in problems)
    assert any("CVAT for images" in p for p in problems)
    assert cvat.parse_xml(b"<annotations><oops").problems[0].startswith("not a readable XML")
    assert "DOCTYPE" in cvat.parse_xml(b'<!DOCTYPE x [<!ENTITY a "b">]><annotations/>').problems[0]
