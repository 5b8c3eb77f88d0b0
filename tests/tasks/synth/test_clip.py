"""render_clip: the mp4 and the release-format GT on disk, and their consistency."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from tasks.formats import ytvis
from tasks.synth import build_scene, render_clip, render_frames
from tasks.synth import clip as clipmod

ARGS = {"seconds": 1.0, "fps": 12.0, "width": 128, "seed": 4, "objects": 6}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "nested" / "clip0"
    summary = render_clip(out, progress=False, **ARGS)
    return out, summary


def test_summary_and_files(rendered):
    out, summary = rendered
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "gt.json"]  # no temp files left
    assert summary["clip"] == str(out / "clip.mp4") and summary["gt"] == str(out / "gt.json")
    assert (summary["frames"], summary["width"], summary["height"], summary["fps"]) == (12, 128, 64, 12.0)
    assert summary["seconds_rendered"] == pytest.approx(1.0)
    assert summary["tracks"][1] == {"category": "sky", "role": "background"}
    assert summary["tracks"][2] == {"category": "grass", "role": "background"}
    assert [summary["tracks"][t]["role"] for t in range(3, 9)] == [
        "seam", "pole", "appears", "occluded", "occluder", "extra"]
    json.dumps(summary)  # the CLI prints it


def test_uid_is_the_content_hash_of_the_clip(rendered):
    out, summary = rendered
    digest = hashlib.sha256((out / "clip.mp4").read_bytes()).hexdigest()[:16]
    doc = ytvis.load(out / "gt.json")
    assert doc["videos"][0]["video_uid"] == digest == summary["uid"]


def test_mp4_has_the_right_size_frame_count_and_content(rendered):
    out, _ = rendered
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(decoded) == 12
    assert decoded[0].shape == (64, 128, 3)
    rendered_rgb = [rgb for rgb, _ in render_frames(build_scene(**ARGS))]
    for a, b in zip(decoded, rendered_rgb):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6  # H.264 at crf 16, not another picture


def test_gt_decodes_to_exactly_the_rendered_id_maps(rendered):
    out, _ = rendered
    doc = ytvis.load(out / "gt.json")
    video = doc["videos"][0]
    assert (video["width"], video["height"], video["length"], video["fps"]) == (128, 64, 12, 12.0)
    decoded = list(ytvis.video_idmaps(doc))
    expected = [ids for _, ids in render_frames(build_scene(**ARGS))]
    assert len(decoded) == len(expected)
    for a, b in zip(decoded, expected):
        assert np.array_equal(a, b)
    tracks = ytvis.video_tracks(doc)
    assert tracks[1].category == "sky" and tracks[2].category == "grass"
    synth = video["synth"]
    assert synth["seed"] == 4 and synth["roles"]["seam"] == [3] and synth["roles"]["occluder"] == [7]
    assert set(synth["events"]) == {"seam_cross", "pole_peak", "appear", "occlusion"}
    # the appearing object is null in the early frames of the release document
    appears = next(a for a in doc["annotations"] if a["track_id"] == 5)
    assert appears["segmentations"][0] is None and appears["segmentations"][-1] is not None


def test_bad_arguments_fail_before_touching_the_disk(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="width must be an even integer"):
        render_clip(out, width=101, progress=False)
    assert not out.exists()


def test_a_failure_leaves_no_clip_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while building the GT")

    monkeypatch.setattr(clipmod, "build_video", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        render_clip(tmp_path, seconds=0.5, fps=8.0, width=64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_rendering_removes_the_partial_mp4(tmp_path, monkeypatch):
    def frames(scene, progress=False):
        gen = render_frames(scene)
        yield next(gen)
        raise RuntimeError("simulated failure mid-clip")

    monkeypatch.setattr(clipmod, "render_frames", frames)
    with pytest.raises(RuntimeError, match="mid-clip"):
        render_clip(tmp_path, seconds=0.5, fps=8.0, width=64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_same_arguments_give_the_same_clip_and_uid(tmp_path):
    """x264 is deterministic by default, so the video id of a synthetic clip is reproducible:
    a GT file can be regenerated for predictions made on an earlier render."""
    a = render_clip(tmp_path / "a", seconds=0.5, fps=8.0, width=64, seed=1, progress=False)
    b = render_clip(tmp_path / "b", seconds=0.5, fps=8.0, width=64, seed=1, progress=False)
    assert a["uid"] == b["uid"]
    assert (tmp_path / "a" / "clip.mp4").read_bytes() == (tmp_path / "b" / "clip.mp4").read_bytes()


def test_moving_camera_clip_frame_t_is_the_picture_of_gt_frame_t(tmp_path):
    """Issue 10 §1.3: with a moving camera the mp4's frame t and the GT's frame t are rendered with
    the same camera pose (no frame offset from the encoder or the GT assembly), through the JPEG
    round trip and crf 23: decoded frame t is closer to the rendered frame t than to t-1 or t+1."""
    args = {"seconds": 1.0, "fps": 12.0, "width": 256, "seed": 1, "objects": 5, "camera": "pan"}
    out = tmp_path / "pan"
    render_clip(out, progress=False, **args)
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32))
    cap.release()
    frames = list(render_frames(build_scene(**args)))
    gt = list(ytvis.video_idmaps(ytvis.load(out / "gt.json")))
    assert len(decoded) == len(frames) == len(gt) == 12
    for t, img in enumerate(decoded):
        assert np.array_equal(gt[t], frames[t][1])
        err = {k: float(np.abs(img - frames[k][0]).mean()) for k in (t - 1, t, t + 1) if 0 <= k < len(frames)}
        assert min(err, key=err.get) == t, err
