"""Rotation consistency / equivariance agreement and per-object J/F of prompted tracks."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.geometry.erp import roll
from tasks.geometry.rotation import rotate_erp, rotation_matrix
from tasks.metrics.consistency import Agreement, agreement, track_scores

H, W = 64, 128


def _scene() -> np.ndarray:
    ids = np.zeros((H, W), np.uint16)
    ids[20:40, 10:50] = 1  # big
    ids[45:50, 60:66] = 2  # small
    ids[25:35, 120:128] = 3  # across the seam
    ids[25:35, 0:6] = 3
    ids[0:4, :] = 4  # the polar cap
    return ids


def test_identical_sequences_agree_fully_whatever_the_ids():
    ids = _scene()
    renamed = np.where(ids > 0, ids + 10, 0).astype(np.uint16)
    res = agreement([ids, ids], [renamed, renamed])
    assert res["iou_weighted"] == pytest.approx(1.0) and res["iou_mean"] == pytest.approx(1.0)
    assert res["ref_tracks"] == res["pred_tracks"] == res["matched"] == 4
    assert {t["ref"]: t["pred"] for t in res["per_track"]} == {1: 11, 2: 12, 3: 13, 4: 14}


def test_rotation_consistency_of_a_perfect_labeler_is_high_and_of_a_still_one_low():
    ids = _scene()
    R = rotation_matrix(0.4, 0.2, 0.1).T
    moved = rotate_erp(ids, R, interpolation="nearest")
    good = agreement([moved], [moved])
    stuck = agreement([moved], [ids])  # labels that did not follow the camera
    assert good["iou_weighted"] == pytest.approx(1.0)
    assert stuck["iou_weighted"] < 0.6  # the polar cap still half-overlaps its moved self
    rolled = agreement([roll(ids, W // 2)], [roll(ids, W // 2)])
    assert rolled["iou_weighted"] == pytest.approx(1.0)


def test_matching_is_over_the_clip_so_an_id_switch_costs():
    ids = _scene()
    swapped = ids.copy()
    swapped[ids == 1], swapped[ids == 2] = 2, 1
    res = agreement([ids] * 3 + [ids], [ids] * 3 + [swapped])
    per = {t["ref"]: t for t in res["per_track"]}
    assert per[1]["pred"] == 1 and per[1]["iou"] == pytest.approx(0.75)  # 3 of 4 frames right
    assert res["iou_weighted"] < 1.0


def test_area_weighting_and_unmatched_tracks():
    ids = _scene()
    pred = ids.copy()
    pred[ids == 2] = 0  # the small object missed entirely
    res = agreement([ids], [pred])
    per = {t["ref"]: t for t in res["per_track"]}
    assert per[2]["pred"] is None and per[2]["iou"] == 0.0
    assert res["iou_mean"] == pytest.approx(0.75)
    assert res["iou_weighted"] > 0.97  # a small object weighs little
    split = ids.copy()
    split[20:40, 30:50][ids[20:40, 30:50] == 1] = 9  # object 1 followed as two tracks
    acc = Agreement()
    acc.add(ids, split)
    assert acc.covering(1) == [1, 9] and acc.covering(3) == [3] and acc.covering(99) == []


def test_frames_without_the_object_and_bad_input():
    empty = np.zeros((H, W), np.uint16)
    ids = _scene()
    res = agreement([empty, ids], [empty, ids])
    assert res["frames"] == 2 and res["iou_weighted"] == pytest.approx(1.0)
    assert agreement([empty], [empty])["iou_weighted"] == 1.0
    with pytest.raises(ValueError):
        agreement([ids], [ids[:, :64]])
    with pytest.raises(ValueError):
        agreement([ids, ids], [ids])


def test_track_scores_of_prompted_objects():
    ids = _scene()
    shifted = np.roll(ids, 2, axis=1)
    s = track_scores([ids, ids], [ids, shifted], [1, 3, 7])
    assert s[3]["J_planar"] < 1.0 and s[1]["J_sphere"] < 1.0
    assert s[1]["frames"] == 2 and s[7]["frames"] == 0 and s[7]["J_sphere"] == 1.0
    perfect = track_scores([ids], [ids], [1, 2, 3, 4])
    for v in perfect.values():
        assert v["J_planar"] == v["J_sphere"] == v["F_planar"] == v["F_sphere"] == 1.0
    # the seam object is one object on the sphere: its boundary has no cut at the border
    half = ids.copy()
    half[ids == 3] = 0
    half[25:35, 120:128] = 3
    s = track_scores([ids], [half], [3])[3]
    assert s["J_sphere"] == pytest.approx(8 / 14, abs=0.02)
