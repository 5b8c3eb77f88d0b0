"""End-to-end evaluation of small synthetic release documents (64 x 128 ERP frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.errors import PermanentError
from tasks.formats import ytvis
from tasks.geometry.erp import row_solid_angles
from tasks.metrics import EvaluationError, evaluate, format_report
from tasks.metrics.davis import f_measure

H, W = 64, 128
WR = row_solid_angles(H, W)
CATEGORIES = {1: "sky", 2: "car", 3: "person", 4: "person", 5: "person", 6: "person", 7: "floor", 8: "car"}


def make_doc(maps, uid="vid", categories=None):
    maps = [np.asarray(m, np.uint16) for m in maps]
    cats = {**CATEGORIES, **(categories or {})}
    ids = sorted(set().union(*(np.unique(m).tolist() for m in maps)) - {0})
    h, w = maps[0].shape
    video = ytvis.VideoInfo(uid, w, h, len(maps), 30.0)
    return ytvis.build_video(video, maps, {t: ytvis.TrackInfo(t, cats.get(t, "person")) for t in ids})


def rect(y0, y1, x0, x1, h=H, w=W):
    """Rows y0..y1-1 and columns x0..x1-1; columns wrap past the seam."""
    m = np.zeros((h, w), bool)
    m[y0:y1, np.arange(x0, x1) % w] = True
    return m


def paint(*layers, h=H, w=W):
    out = np.zeros((h, w), np.uint16)
    for tid, mask in layers:
        out[mask] = tid
    return out


def obj(result, gt_track):
    return next(o for o in result["objects"] if o["gt_track"] == gt_track)


def scene(f):
    """Sky band (stuff, full width), a moving car, a person across the seam, one near the pole."""
    return paint(
        (1, rect(0, 8, 0, W)),
        (2, rect(30, 40, 20 + 2 * f, 46 + 2 * f)),
        (3, rect(20, 36, W - 6, W + 6)),
        (4, rect(9, 13, 60, 80)),
    )


# -- perfect prediction ----------------------------------------------------------------------------
def test_identical_prediction_scores_one_everywhere():
    gt = make_doc([scene(f) for f in range(3)])
    r = evaluate(gt, gt)
    for m in ("J", "F", "J&F"):
        assert r[m] == {"planar": 1.0, "sphere": 1.0}
    assert r["things"]["n"] == 3 and r["stuff"]["n"] == 1
    assert r["things"]["J&F"] == {"planar": 1.0, "sphere": 1.0}
    assert r["id_switches"] == 0
    assert r["seam_objects"] == 2  # the sky band and the person at the seam
    assert r["seam_split_objects"] == 0
    assert r["unmatched_pred_tracks"] == []
    assert r["coverage"]["pred"] == r["coverage"]["gt"]
    assert [o["pred_track"] for o in r["objects"]] == [1, 2, 3, 4]
    assert (r["frames"], r["width"], r["height"], r["video_uid"]) == (3, W, H, "vid")
    json.dumps(r)  # JSON-able


# -- known values ----------------------------------------------------------------------------------
def test_horizontal_shift_gives_hand_computed_j():
    gt_m = rect(27, 37, 40, 60)
    pred_m = np.roll(gt_m, 3, axis=1)
    r = evaluate(make_doc([paint((2, pred_m))]), make_doc([paint((2, gt_m))]))
    # 10 rows x (17 shared of 23 covered columns); every row is weighted alike, so the
    # solid-angle IoU is the same ratio
    assert r["J"]["planar"] == round(170 / 230, 4)
    assert r["J"]["sphere"] == round(170 / 230, 4)
    assert r["F"]["planar"] == round(f_measure(pred_m, gt_m), 4)
    assert r["F"]["planar"] < 1.0


def test_vertical_shift_weights_rows_by_solid_angle():
    gt_m = rect(27, 37, 40, 60)
    pred_m = np.roll(gt_m, 2, axis=0)
    r = evaluate(make_doc([paint((2, pred_m))]), make_doc([paint((2, gt_m))]))
    assert r["J"]["planar"] == round(8 / 12, 4)
    assert r["J"]["sphere"] == round(WR[29:37].sum() / WR[27:39].sum(), 4)
    assert r["F"]["planar"] == round(f_measure(pred_m, gt_m), 4)


def test_frames_where_both_are_empty_do_not_count():
    m = rect(27, 37, 40, 60)
    gt = make_doc([paint((2, m)), paint((2, m)), paint(), paint()])
    pred = make_doc([paint((2, m)), paint((2, m)), paint((2, m)), paint()])  # a false positive in frame 2
    r = evaluate(pred, gt)
    o = obj(r, 2)
    assert o["frames"] == 3
    assert o["J"] == {"planar": round(2 / 3, 4), "sphere": round(2 / 3, 4)}
    assert o["F"]["planar"] == round(2 / 3, 4)  # boundary F is 0 when the GT has no boundary


def test_unmatched_gt_object_scores_zero():
    gt = make_doc([paint((2, rect(27, 37, 40, 60)), (3, rect(27, 37, 80, 90)))])
    pred = make_doc([paint((2, rect(27, 37, 40, 60)), (8, rect(50, 55, 10, 20)))])
    r = evaluate(pred, gt)
    assert obj(r, 3)["pred_track"] is None
    assert obj(r, 3)["J"] == {"planar": 0.0, "sphere": 0.0}
    assert obj(r, 3)["F"] == {"planar": 0.0, "sphere": 0.0}
    assert r["J"]["planar"] == 0.5 and r["F"]["sphere"] == 0.5
    assert r["unmatched_pred_tracks"] == [8]


def test_error_near_the_pole_costs_less_on_the_sphere():
    gt_m = rect(0, H, 40, 60)
    near_pole = gt_m & ~rect(0, 2, 40, 60)
    at_equator = gt_m & ~rect(31, 33, 40, 60)
    gt = make_doc([paint((2, gt_m))])
    r_pole = evaluate(make_doc([paint((2, near_pole))]), gt)
    r_eq = evaluate(make_doc([paint((2, at_equator))]), gt)
    assert r_pole["J"]["planar"] == r_eq["J"]["planar"] == round(1 - 40 / 1280, 4)
    assert r_pole["J"]["sphere"] == round(1 - WR[0:2].sum() / WR.sum(), 4)
    assert r_pole["J"]["sphere"] > r_eq["J"]["sphere"]
    assert r_eq["J"]["sphere"] == round(1 - WR[31:33].sum() / WR.sum(), 4)
    # the same 40 pixels cost over ten times more at the equator
    assert (1 - r_eq["J"]["sphere"]) > 10 * (1 - r_pole["J"]["sphere"])


def test_coverage_planar_and_spherical():
    gt = make_doc([paint((7, rect(0, 16, 0, W))), paint((7, rect(0, 32, 0, W)))])
    pred = make_doc([paint((7, rect(0, 16, 0, W))), paint()])
    c = evaluate(pred, gt)["coverage"]
    quarter = (1 - np.sin(np.pi / 4)) / 2  # solid-angle fraction north of latitude 45 deg
    assert c["gt"] == {"planar_mean": 0.375, "sphere_mean": round((quarter + 0.5) / 2, 4),
                       "planar_min": 0.25, "sphere_min": round(quarter, 4)}
    assert c["pred"]["planar_min"] == 0.0 and c["pred"]["sphere_mean"] == round(quarter / 2, 4)


def test_empty_prediction_and_empty_ground_truth():
    gt = make_doc(GT_MAPS)
    empty = make_doc([np.zeros((H, W), np.uint16)] * 3)
    r = evaluate(empty, gt)
    assert r["J&F"] == {"planar": 0.0, "sphere": 0.0} and r["things"]["n"] == 3
    assert r["coverage"]["pred"]["planar_mean"] == 0.0
    # nothing to average over: no score rather than a made-up one, and the predictions are listed
    r = evaluate(gt, empty)
    assert r["J&F"] == {"planar": None, "sphere": None} and r["objects"] == []
    assert r["unmatched_pred_tracks"] == [1, 2, 3, 4]
    assert "the ground truth has no objects" in format_report(r)


# -- seam ----------------------------------------------------------------------------------------
SEAM_PERSON = rect(20, 36, W - 6, W + 10)  # columns 122..127 and 0..9


def test_seam_object_predicted_as_one_id():
    gt = make_doc([paint((3, SEAM_PERSON))])
    r = evaluate(gt, gt)
    assert r["seam_objects"] == 1 and r["seam_split_objects"] == 0
    assert obj(r, 3)["crosses_seam"] and not obj(r, 3)["seam_split"]
    assert r["F"] == {"planar": 1.0, "sphere": 1.0}


def test_seam_object_predicted_as_two_ids_is_a_seam_split():
    left = SEAM_PERSON & rect(0, H, 0, W // 2)
    right = SEAM_PERSON & ~left
    r = evaluate(make_doc([paint((5, left), (6, right))]), make_doc([paint((3, SEAM_PERSON))]))
    assert r["seam_objects"] == 1
    assert r["seam_split_objects"] == 1
    assert obj(r, 3)["seam_split"]
    assert obj(r, 3)["pred_track"] == 5  # the larger part (10 of 16 columns)
    assert r["unmatched_pred_tracks"] == [6]


def test_neighbour_leaking_over_a_seam_object_is_no_seam_split():
    # moving camera (issue 10): the floor track, warped on its own, still covers the part of the
    # seam object the object's lagging mask left behind -- a J error of both, not two ids
    floor = rect(36, H, 0, W)
    lag = SEAM_PERSON & rect(30, 36, 0, W)  # 6 of 16 rows of the person, > SEAM_SHARE
    gt = make_doc([paint((7, floor), (3, SEAM_PERSON))])
    r = evaluate(make_doc([paint((7, floor), (3, SEAM_PERSON & ~lag), (7, lag))]), gt)
    assert r["seam_objects"] == 2 and r["seam_split_objects"] == 0  # the floor band crosses too
    assert obj(r, 3)["pred_track"] == 3 and obj(r, 3)["J"]["planar"] < 0.7
    # the same piece as a track of its own (matched to nothing) is a second id: a split
    r = evaluate(make_doc([paint((7, floor), (3, SEAM_PERSON & ~lag), (5, lag))]), gt)
    assert r["seam_split_objects"] == 1 and r["unmatched_pred_tracks"] == [5]


def test_one_pixel_shift_across_the_seam_hurts_only_the_planar_boundary():
    gt_m = rect(20, 36, W - 1, W + 10)  # column 127 and 0..9
    pred_m = np.roll(gt_m, 1, axis=1)  # now columns 0..10: one pixel off, across the seam
    r = evaluate(make_doc([paint((3, pred_m))]), make_doc([paint((3, gt_m))]))
    assert r["F"]["sphere"] == 1.0
    assert r["F"]["planar"] == round(f_measure(pred_m, gt_m), 4)
    assert r["F"]["planar"] < 0.95
    assert r["F"]["sphere"] >= r["F"]["planar"]


# -- identity --------------------------------------------------------------------------------------
def test_id_switch_from_five_to_seven():
    m = rect(27, 37, 40, 60)
    gt = make_doc([paint((2, np.roll(m, f, axis=1))) for f in range(6)])
    pred = make_doc([paint((5 if f < 3 else 7, np.roll(m, f, axis=1))) for f in range(6)])
    r = evaluate(pred, gt)
    assert r["id_switches"] == 1
    assert obj(r, 2)["id_switches"] == 1
    assert obj(r, 2)["J"]["planar"] == 0.5  # the matched track is right in half the frames
    assert sorted([obj(r, 2)["pred_track"], *r["unmatched_pred_tracks"]]) == [5, 7]


def test_id_needs_half_of_the_object():
    m = rect(27, 37, 40, 60)
    third = rect(27, 37, 40, 46)  # under half of the object: no id in that frame
    gt = make_doc([paint((2, m))] * 4)
    pred = make_doc([paint((5, m)), paint((7, third)), paint((5, m)), paint((7, m))])
    r = evaluate(pred, gt)
    assert obj(r, 2)["id_switches"] == 1  # 5, -, 5, 7


# -- invariance under yaw --------------------------------------------------------------------------
def _pred_frame(f):
    car = rect(31, 40, 22 + 2 * f, 47 + 2 * f)
    return paint(
        (1, rect(0, 7, 0, W)),
        (2 if f < 2 else 8, car),  # the car changes id
        (3, rect(20, 35, W - 5, W + 7)),
        (6, rect(9, 14, 61, 79)),
        (5, rect(50, 56, 90, 100)),  # a false positive
    )


def _roll_doc(maps, shift, **kw):
    return make_doc([np.roll(m, shift, axis=1) for m in maps], **kw)


GT_MAPS = [scene(f) for f in range(3)]
PRED_MAPS = [_pred_frame(f) for f in range(3)]
BAND_GT = [paint((1, rect(0, 8, 0, W)), (7, rect(56, H, 0, W)))] * 2
BAND_PRED = [paint((5, rect(0, 8, 0, 64)), (6, rect(0, 8, 64, W)), (7, rect(57, H, 0, W)))] * 2
BASE = evaluate(make_doc(PRED_MAPS), make_doc(GT_MAPS))
BAND_BASE = evaluate(make_doc(BAND_PRED), make_doc(BAND_GT))


def _invariant_view(r):
    return {
        "J": r["J"]["sphere"], "Jp": r["J"]["planar"], "F": r["F"]["sphere"], "JF": r["J&F"]["sphere"],
        "ids": r["id_switches"], "unmatched": r["unmatched_pred_tracks"],
        "objects": [(o["gt_track"], o["pred_track"], o["J"]["sphere"], o["F"]["sphere"], o["id_switches"])
                    for o in r["objects"]],
        "coverage": r["coverage"],
    }


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=1, max_value=W - 1))
def test_yaw_roll_changes_no_spherical_number(shift):
    assert BASE["J"]["sphere"] < 1 and BASE["F"]["sphere"] < 1 and BASE["id_switches"] == 1
    r = evaluate(_roll_doc(PRED_MAPS, shift), _roll_doc(GT_MAPS, shift))
    assert _invariant_view(r) == _invariant_view(BASE)
    # objects spanning every longitude cross the seam whatever the yaw
    rb = evaluate(_roll_doc(BAND_PRED, shift), _roll_doc(BAND_GT, shift))
    assert (rb["seam_objects"], rb["seam_split_objects"]) == (2, 1)
    assert _invariant_view(rb) == _invariant_view(BAND_BASE)


# -- bad inputs ------------------------------------------------------------------------------------
def test_size_mismatch_is_a_clear_error():
    small = make_doc([np.zeros((32, 64), np.uint16) + 2])
    with pytest.raises(EvaluationError, match="prediction is 64x32 but ground truth is 128x64"):
        evaluate(small, make_doc(GT_MAPS[:1]))
    assert issubclass(EvaluationError, PermanentError)


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(EvaluationError, match="prediction has 2 frames but ground truth has 3"):
        evaluate(make_doc(GT_MAPS[:2]), make_doc(GT_MAPS))


def test_not_equirectangular_is_rejected():
    square = make_doc([np.ones((32, 32), np.uint16)])
    with pytest.raises(EvaluationError, match="not 2:1"):
        evaluate(square, square)


def test_video_selection_by_uid():
    a = make_doc(GT_MAPS[:2], uid="a")
    b = make_doc(GT_MAPS, uid="b")
    both = ytvis.merge([a, b])
    with pytest.raises(EvaluationError, match="ground truth: a, b; prediction: a, b"):
        evaluate(both, both)
    with pytest.raises(EvaluationError, match=r"'nope' is not in the ground truth \(it holds: a, b\)"):
        evaluate(both, both, video_uid="nope")
    with pytest.raises(EvaluationError, match=r"'a' is not in the prediction \(it holds: b\)"):
        evaluate(b, both, video_uid="a")
    r = evaluate(both, both, video_uid="b")
    assert (r["video_uid"], r["frames"]) == ("b", 3)
    # one video on each side is the pair only when it is the same video (issue 12 §9: another
    # video scored against this ground truth exited 0 with a number)
    with pytest.raises(EvaluationError, match="prediction is of video a but the ground truth is of video other"):
        evaluate(a, make_doc(GT_MAPS[:2], uid="other"))
    # a prediction without video_uid (another tool's output) is taken as the ground truth's video
    anon = make_doc(GT_MAPS[:2], uid="a")
    del anon["videos"][0]["video_uid"]
    r = evaluate(anon, make_doc(GT_MAPS[:2], uid="other"))
    assert r["video_uid"] == "other" and r["pred_video_uid"] == "1"


def test_files_that_are_not_release_documents(tmp_path):
    good = tmp_path / "gt.json"
    good.write_text(json.dumps(make_doc(GT_MAPS)))
    junk = tmp_path / "junk.json"
    junk.write_text("not json at all")
    with pytest.raises(ytvis.FormatError, match="prediction: .*junk.json: not a JSON release document"):
        evaluate(junk, good)
    with pytest.raises(ytvis.FormatError, match="ground truth: .*missing.json: no such file"):
        evaluate(good, tmp_path / "missing.json")
    with pytest.raises(ytvis.FormatError, match="prediction: document: missing list 'videos'"):
        evaluate({"annotations": []}, good)
    assert evaluate(good, good)["J&F"]["sphere"] == 1.0  # paths work


# -- report ----------------------------------------------------------------------------------------
def test_report_is_a_readable_table():
    r = json.loads(json.dumps(BASE))
    text = format_report(r)
    lines = text.splitlines()
    assert lines[0] == f"video vid: 3 frames, {W}x{H}"
    assert any(line.split()[:2] == ["J&F", f"{BASE['J&F']['planar']:.4f}"] for line in lines)
    assert "ID switches: 1" in text
    assert "unmatched predicted tracks: 5" in text
    for o in BASE["objects"]:
        assert any(line.split()[:2] == [str(o["gt_track"]), o["category"]] for line in lines)
    assert "matched prediction is present" in text
