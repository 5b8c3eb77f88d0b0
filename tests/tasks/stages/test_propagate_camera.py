"""Real footage that defeats the camera estimator (issue 10, "Bad input"): a cut to a new scene,
black frames, and a new scene after them. No crash; QA flags each frame with its reason; the
labels after a cut are proposed anew (new ids), not dragged across it."""

import json
import math

import cv2
import numpy as np
import pytest

from tasks.formats.idmap import decode_png
from tasks.geometry.rotation import rotate_erp, rotation_matrix
from tasks.label import label_video
from tasks.stages.runner import load_manifest, output_key
from tasks.storage import LocalStore
from tasks.video.frames import Mp4Writer

W = 256


def _erp(path, width=W):
    im = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(im, (width, width // 2), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def cut_clip(shared_data, tmp_path_factory):
    """16 frames at 8 fps, the camera panning 3 deg per frame: the pannellum panorama (0-4), a cut
    to a 360VOT scene (5-9), two black frames (10-11), another 360VOT scene (12-15)."""
    pano = _erp(shared_data / "erp_images" / "pannellum_examplepano_4096x2048.jpg")
    a = _erp(shared_data / "360vot_samples" / "0098_000193.jpg")
    b = _erp(shared_data / "360vot_samples" / "0115_000216.jpg")

    def pan(img, n):
        return [rotate_erp(img, rotation_matrix(math.radians(3 * t), 0.0, 0.0)) for t in range(n)]

    frames = pan(pano, 5) + pan(a, 5) + [np.zeros_like(pano)] * 2 + pan(b, 4)
    path = tmp_path_factory.mktemp("cut") / "cut.mp4"
    with Mp4Writer(path, W, W // 2, 8.0) as mp4:
        for f in frames:
            mp4.write(f)
    return path


@pytest.mark.slow
def test_cuts_and_black_frames_are_flagged_and_relabeled_with_new_ids(cut_clip, tmp_path):
    out = tmp_path / "out"
    res = label_video(cut_clip, out, progress=False)
    store = LocalStore(out / ".store")
    camera = store.get_json(output_key(store, load_manifest(store, res.video_id, res.run, "refine"), "camera"))
    by_frame = {c["frame"]: c for c in camera["frames"]}
    assert all(by_frame[t]["ok"] for t in (1, 2, 3, 4, 6, 7, 8, 9, 13, 14, 15))
    assert [abs(by_frame[t]["ypr_deg"][0]) for t in (2, 7, 14)] == pytest.approx([3.0] * 3, abs=0.5)
    assert by_frame[5]["reason"] == "cut"
    assert [by_frame[t]["reason"] for t in (10, 11, 12)] == ["uniform"] * 3 and by_frame[12]["cut"]

    flags = json.loads((out / "flags.json").read_text())["flags"]
    cam = {f["reason"]: f["frames"] for f in flags if f["type"] == "camera_motion"}
    assert cam == {"cut": [[5, 5], [12, 12]], "uniform": [[10, 12]]}

    maps = [decode_png((out / "idmaps" / f"{t:05d}.png").read_bytes()) for t in range(16)]
    ids = [set(np.unique(m).tolist()) - {0} for m in maps]
    before5, before12 = set().union(*ids[:5]), set().union(*ids[:12])
    assert ids[5] and not ids[5] & before5           # the new scene has its own objects
    assert ids[12] and not ids[12] & before12        # ... and so has the one after the black frames
    assert res.frames == 16
