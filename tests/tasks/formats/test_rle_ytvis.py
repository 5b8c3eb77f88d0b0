import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from tasks.formats import idmap, rle, ytvis
from tasks.formats.ytvis import FormatError, TrackInfo, VideoInfo


def frames(n=4, h=32, w=64):
    out = []
    for f in range(n):
        m = np.zeros((h, w), np.uint16)
        m[:8] = 1                                   # sky-like band (stuff)
        m[12:20, (58 + 2 * f) % w:] = 3             # object moving across the seam
        m[12:20, :max(0, (58 + 2 * f + 8) - w)] = 3
        if f >= 2:
            m[24:28, 10:14] = 4                     # appears on frame 2
        out.append(m)
    return out


def test_rle_matches_pycocotools_and_json():
    m = np.zeros((20, 40), bool)
    m[3:9, 5:30] = True
    r = rle.encode(m)
    json.dumps(r)
    assert isinstance(r["counts"], str) and r["size"] == [20, 40]
    assert (rle.decode(r) == m).all() and rle.area(r) == m.sum()
    ref = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
    assert ref["counts"].decode() == r["counts"]


def test_idmap_png_round_trip_uint16():
    m = np.random.default_rng(1).integers(0, 65535, (16, 32)).astype(np.uint16)
    assert (idmap.decode_png(idmap.encode_png(m)) == m).all()
    with pytest.raises(ValueError):
        idmap.encode_png(np.full((2, 4), 70000))


def test_release_document_round_trip_and_extension_fields():
    maps = frames()
    tracks = {1: TrackInfo(1, "sky"), 3: TrackInfo(3, "ball", {"proposers": ["x"]}), 4: TrackInfo(4, "unknown"),
              9: TrackInfo(9, "car")}  # 9 never shows: not an object of the release
    doc = ytvis.build_video(VideoInfo("0123456789abcdef", 64, 32, 4, 10.0, empty_frames=[]), maps, tracks)
    doc = ytvis.load(json.loads(json.dumps(doc)))
    assert [a["track_id"] for a in doc["annotations"]] == [1, 3, 4]
    for a, b in zip(ytvis.video_idmaps(doc), maps):
        assert (a == b).all()
    obj = next(a for a in doc["annotations"] if a["track_id"] == 3)
    assert obj["provenance"] == {"proposers": ["x"]}
    assert obj["bboxes"][0] == [0, 12, 64, 8]      # planar: full width when crossing the seam
    assert obj["wrap_bboxes"][0] == [58, 12, 8, 8]  # wrap-aware: 8 columns from 58
    assert len(obj["bfovs"][0]) == 4 and obj["sphere_areas"][0] > 0
    late = next(a for a in doc["annotations"] if a["track_id"] == 4)
    assert late["segmentations"][:2] == [None, None] and late["areas"][2] == 16
    names = {c["name"] for c in doc["categories"]}
    assert names == {"sky", "ball", "unknown"}


def test_bad_documents_are_rejected_clearly(tmp_path):
    doc = ytvis.build_video(VideoInfo("0123456789abcdef", 64, 32, 4, 10.0), frames(), {1: TrackInfo(1, "sky"),
                            3: TrackInfo(3, "ball"), 4: TrackInfo(4, "car")})
    bad = json.loads(json.dumps(doc))
    bad["annotations"][0]["segmentations"] = bad["annotations"][0]["segmentations"][:2]
    with pytest.raises(FormatError, match="2 segmentations for a video of 4 frames"):
        ytvis.load(bad)
    bad = json.loads(json.dumps(doc))
    bad["annotations"][1]["segmentations"][0]["size"] = [10, 10]
    with pytest.raises(FormatError, match="RLE of size"):
        ytvis.load(bad)
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(FormatError, match="not a JSON"):
        ytvis.load(tmp_path / "x.json")
    with pytest.raises(FormatError, match="track id 3"):
        ytvis.build_video(VideoInfo("u", 64, 32, 4, 10.0), frames(), {1: TrackInfo(1, "sky")})
    over = json.loads(json.dumps(doc))
    over["annotations"][1]["segmentations"][0] = over["annotations"][0]["segmentations"][0]
    with pytest.raises(FormatError, match="overlap"):
        list(ytvis.video_idmaps(over))


def test_merge_renumbers_videos_and_annotations():
    a = ytvis.build_video(VideoInfo("a" * 16, 64, 32, 4, 10.0), frames(), {1: TrackInfo(1, "sky"),
                          3: TrackInfo(3, "ball"), 4: TrackInfo(4, "car")})
    b = ytvis.build_video(VideoInfo("b" * 16, 64, 32, 4, 10.0), frames(), {1: TrackInfo(1, "grass"),
                          3: TrackInfo(3, "ball"), 4: TrackInfo(4, "car")})
    m = ytvis.load(ytvis.merge([a, b]))
    assert [v["id"] for v in m["videos"]] == [1, 2]
    assert [x["id"] for x in m["annotations"]] == list(range(1, 7))
    assert {c["name"] for c in m["categories"]} == {"sky", "grass", "ball", "car"}
