"""Prompts (issue 12 §6): what a person gave is applied as given, or refused naming ids and frames
-- never silently altered (an id dropped, an overlap decided, another video's objects applied)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import PromptError
from tasks.formats import rle, ytvis
from tasks.labeling import prompts
from tasks.storage import LocalStore

H, W, N = 32, 64, 4
UID = "0123456789abcdef"


def doc_of(masks: dict[int, dict[int, np.ndarray]], uid: str | None = UID) -> dict:
    """track id -> {frame: mask}; masks may overlap (written annotation by annotation)."""
    doc = ytvis.build_video(ytvis.VideoInfo(uid or "x", W, H, N, 10.0), [np.zeros((H, W), np.uint16)] * N, {})
    if uid is None:
        del doc["videos"][0]["video_uid"]
    doc["categories"] = [{"id": 1, "name": "ball", "isthing": 1}]
    for k, (tid, frames) in enumerate(masks.items(), start=1):
        segs = [None] * N
        for f, m in frames.items():
            segs[f] = rle.encode(m)
        doc["annotations"].append({"id": k, "video_id": 1, "category_id": 1, "iscrowd": 0, "track_id": tid,
                                   "segmentations": segs})
    return json.loads(json.dumps(doc))


def box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def seam_box() -> np.ndarray:   # one object across the left/right border
    return box(4, 10, 60, 64) | box(4, 10, 0, 3)


def test_disjoint_prompts_are_applied_as_given():
    p = prompts.parse(doc_of({3: {0: seam_box(), 2: box(0, 2, 0, 64)}, 8: {0: box(20, 30, 10, 20)}}))
    assert p.tracks == {3: "ball", 8: "ball"} and p.video_uid == UID and p.length == N
    assert ((p.frames[0] == 3) == seam_box()).all() and ((p.frames[0] == 8) == box(20, 30, 10, 20)).all()
    assert ((p.frames[2] == 3) == box(0, 2, 0, 64)).all()     # the pole row


def test_two_ids_with_identical_masks_are_refused():
    with pytest.raises(PromptError) as e:
        prompts.parse(doc_of({3: {1: seam_box()}, 8: {1: seam_box()}}))
    assert "frame 1: tracks 3 and 8 have identical masks (42 px)" in str(e.value)


def test_overlapping_prompts_are_refused_with_every_overlap_listed():
    doc = doc_of({3: {0: box(0, 10, 0, 10), 2: box(0, 10, 0, 10)}, 8: {0: box(5, 15, 5, 15), 2: box(9, 12, 9, 12)},
                  9: {2: box(30, 32, 0, 64)}})
    with pytest.raises(PromptError) as e:
        prompts.parse(doc)
    msg = str(e.value)
    assert "frame 0: tracks 3 and 8 overlap on 25 px" in msg and "frame 2: tracks 3 and 8 overlap on 1 px" in msg
    assert "and 9" not in msg and "9 and" not in msg           # track 9 touches nobody


def test_prompts_of_another_video_are_refused_and_a_document_without_uid_is_taken():
    p = prompts.parse(doc_of({3: {0: seam_box()}}, uid="fedcba9876543210"))
    with pytest.raises(PromptError, match=f"made for video fedcba9876543210.*this video is {UID}"):
        prompts.check_against_video(p, N, W, video_id=UID)
    anon = prompts.parse(doc_of({3: {0: seam_box()}}, uid=None))
    prompts.check_against_video(anon, N, W, video_id=UID)


def test_the_stage_loader_checks_the_video(tmp_path):
    """load_prompts (what sdr and propagate call) refuses another video's prompts too, so a
    prompts document stored by hand under the wrong video id cannot label it."""
    store = LocalStore(tmp_path / "s")
    data = json.dumps(doc_of({3: {0: seam_box()}}, uid="fedcba9876543210")).encode()
    _, sha = prompts.load_bytes(data)
    store.put_bytes(layout.prompts_key(UID, sha), data)
    cfg = PipelineConfig().with_overrides({"prompts": sha})
    with pytest.raises(PromptError, match="made for video fedcba9876543210"):
        prompts.load_prompts(store, UID, cfg, N, W)


@pytest.mark.parametrize("counts, why", [
    ("", "cover 0 pixels"), ("garbage!!", "not a COCO compressed RLE character"), ("0", "cover 0 pixels"),
    ([5, 10], "cover 15 pixels"), ([-1, 2049], "non-negative integers"), ([True, 2047], "non-negative integers"),
    ("\u00e9", "not a COCO compressed RLE character"), (None, "string (compressed) or a list"),
    ("1P", "end in the middle of a number"),
])
def test_garbage_rle_counts_name_the_track_and_frame(counts, why):
    doc = doc_of({3: {0: seam_box()}, 8: {2: box(20, 30, 10, 20)}})
    doc["annotations"][1]["segmentations"][2]["counts"] = counts
    with pytest.raises(PromptError, match="track 8 frame 2: .*" + re.escape(why)):
        prompts.parse(doc)


def test_malformed_structure_is_a_prompt_error():
    for bad in ([], {"videos": {}}, {"videos": [5], "categories": [], "annotations": []},
                {"videos": [{"id": 1, "width": "64", "height": 32, "length": 4}], "categories": [], "annotations": []}):
        with pytest.raises(PromptError):
            prompts.parse(bad)
    with pytest.raises(PromptError, match="not a JSON"):
        prompts.load_bytes(b"[" * 100_000)
