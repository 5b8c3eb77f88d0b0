"""Re-following from corrected frames on a synthetic clip with known ground truth: errors injected
into the true labels, one frame corrected, the rest repaired forward and backward."""

import json

import numpy as np
import pytest

from tasks.backends.flow import build_propagator
from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.formats import ytvis
from tasks.review.refollow import ArrayFrames, Reversed, carried_tracks, changed_tracks, refollow
from tests.bench.common import decoded_rgb


@pytest.fixture(scope="module")
def clip(tiny_clip):
    gt = json.loads((tiny_clip / "gt.json").read_text())
    return ArrayFrames(decoded_rgb(tiny_clip / "clip.mp4")), list(ytvis.video_idmaps(gt))


def _j(pred, gt):
    s = [np.count_nonzero((pred == k) & (gt == k)) / np.count_nonzero((pred == k) | (gt == k)) for k in np.unique(gt[gt > 0])]
    return float(np.mean(s))


def _apply(base, res):
    return [idmap_png.decode_png(res.frames[t]) if t in res.frames else base[t] for t in range(len(base))]


def _swap(m, a, b):
    o = m.copy()
    o[m == a], o[m == b] = b, a
    return o


def _refollow(frames, corrected, base):
    return refollow(frames, corrected, lambda f: base[f], build_propagator(PipelineConfig(), frames.width),
                    agree_iou=PipelineConfig().review.refollow_agree_iou)


def test_reversed_frames():
    frames = ArrayFrames([np.full((2, 4, 3), i, np.uint8) for i in range(5)])
    r = Reversed(frames)
    assert len(r) == 5 and r.width == 4 and [int(f[0, 0, 0]) for f in r.iter(1)] == [3, 2, 1, 0]


def test_id_switch_fixed_backward_to_the_switch_and_forward_to_the_end(clip):
    frames, gt = clip
    base = [_swap(g, 4, 7) if t >= 6 else g for t, g in enumerate(gt)]   # tracks 4 and 7 swap at frame 6
    res = _refollow(frames, {10: gt[10]}, base)
    assert res.human == [10]
    assert sorted(res.frames) == list(range(6, 16))       # 0-5 were right: untouched
    out = _apply(base, res)
    for t in range(6, 16):
        assert _j(base[t], gt[t]) < 0.75 and _j(out[t], gt[t]) > 0.8, t
    for t in range(6):
        assert np.array_equal(out[t], gt[t])


def test_missed_object_added_on_one_frame_is_followed_both_ways(clip):
    frames, gt = clip
    base = [np.where(g == 6, 2, g).astype(np.uint16) for g in gt]       # object 6 missed: labeled grass
    res = _refollow(frames, {12: gt[12]}, base)
    out = _apply(base, res)
    ious = {t: np.count_nonzero((out[t] == 6) & (gt[t] == 6)) / np.count_nonzero((out[t] == 6) | (gt[t] == 6))
            for t in range(16) if (gt[t] == 6).any()}
    # the object is hidden on frames 7-8: followed backward through the occlusion, it is found
    # again on frames 0-4 (the propagator's memory of hidden objects), and kept forward
    assert all(ious[t] > 0.6 for t in (0, 1, 2, 3, 11, 13, 14, 15)), ious
    assert not (out[7] == 6).any() and not (out[8] == 6).any()
    assert changed_tracks(gt[12], base[12]) == {2, 6} and carried_tracks(gt[12], base[12], 0.5) == {6}


def test_seam_split_merged_on_one_frame_is_merged_on_every_frame(clip):
    frames, gt = clip
    w = gt[0].shape[1]
    k = max((int(np.count_nonzero(g[:, :8] == i) and np.count_nonzero(g[:, -8:] == i)), i)
            for g in gt[:1] for i in np.unique(g[g > 0]))[1]   # an object on both sides of the seam
    base = []
    for g in gt:
        b = g.copy()
        b[:, : w // 2][g[:, : w // 2] == k] = 99          # the left half of it is another track
        base.append(b)
    res = _refollow(frames, {5: gt[5]}, base)
    out = _apply(base, res)
    assert all(not (o == 99).any() for o in out)           # the piece is gone on every frame, both ways
    assert all(_j(o, g) > 0.9 for o, g in zip(out, gt))
