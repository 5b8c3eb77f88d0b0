"""Outputs of the whole per-video chain on a tiny synthetic clip."""

import json

import numpy as np

from tasks import layout
from tasks.formats import ytvis
from tasks.formats.idmap import decode_png
from tasks.stages.runner import output_key
from tasks.video.probe import probe


def test_every_stage_committed_with_small_json_results(labeled_tiny):
    store, vid, run, results = labeled_tiny
    assert [r.stage for r in results] == ["ingest", "decode", "propose", "verify", "sdr", "propagate", "refine",
                                          "qa", "validate"]
    for r in results:
        doc = json.dumps(r.to_json())
        assert len(doc) < 20_000  # what goes to XCom stays small
        assert r.manifest_uri.endswith("_MANIFEST.json")


def test_annotations_masks_idmaps_and_preview(labeled_tiny, tiny_clip):
    store, vid, run, results = labeled_tiny
    qa = store.get_json(layout.manifest_key(vid, run, "qa"))
    doc = ytvis.load(store.get_json(output_key(store, qa, "annotations")))
    video = doc["videos"][0]
    assert video["video_uid"] == vid and (video["width"], video["height"]) == (256, 128)
    n = video["length"]
    gt = ytvis.load(tiny_clip / "gt.json")
    assert n == gt["videos"][0]["length"] == 16
    maps = list(ytvis.video_idmaps(doc))  # raises if masks overlap
    idprefix = output_key(store, qa, "idmaps")
    for t in range(n):
        assert (decode_png(store.get_bytes(f"{idprefix}{t:05d}.png")) == maps[t]).all()
    for a in doc["annotations"]:
        assert "track_id" in a and "provenance" in a
        assert len(a["segmentations"]) == n
    with store.local_file(output_key(store, qa, "preview")) as p:
        pr = probe(p)
    assert pr.n_frames == n
    cov = np.mean([(m > 0).mean() for m in maps])
    assert cov > 0.9


def test_validate_report_passed(labeled_tiny):
    store, vid, run, results = labeled_tiny
    report = store.get_json(store.key_from_uri(results[-1].outputs["report"]))
    assert report["success"] and report["failures"] == []
    assert set(report["tables"]) == {"frames", "masks", "tracks"}
