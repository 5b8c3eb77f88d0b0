"""The tracking pass: one propagator step per frame, refreshes on the check grid, camera motion
(rotation carried into MCR and re-identification; a cut re-proposed with new ids)."""

import math

import cv2
import numpy as np
import pytest

from tasks.config import PipelineConfig
from tasks.geometry.camera_motion import CameraMotion
from tasks.geometry.rotation import rotate_erp, rotation_matrix
from tasks.labeling.follow import TrackingPass, _camera_ypr_deg
from tasks.labeling.relink import LostTrack, RelinkState, rotate_state
from tasks.labeling.sdr import FrameObjects
from tasks.labeling.tracks import Track

H, W = 128, 256


class ListFrames:
    """The part of :class:`tasks.video.framestore.Frames` that following uses."""

    def __init__(self, frames, fps=5.0):
        self.frames = frames
        self.fps = fps
        self.width = frames[0].shape[1]

    def __len__(self):
        return len(self.frames)

    def iter(self, start):
        yield from self.frames[start:]


class FakePropagator:
    """Returns ``maps[t]`` at frame t (what a propagator would have followed), reports
    ``motions[t]`` as its camera motion, and counts its calls."""

    def __init__(self, maps, motions=None, batched=False, still=False):
        self.maps, self.motions = maps, motions or {}
        self.still = still      # after a reset, return what it was reset to (a still scene)
        self.held = None
        self.t = 0
        self.resets = []
        self.last_motion = None
        if batched:
            self.step_many = self._many

    def reset(self, frame, idmap):
        self.resets.append(self.t)
        if self.t and self.still:
            self.held = idmap.copy()

    def step(self, frame):
        self.t += 1
        self.last_motion = self.motions.get(self.t)
        return (self.maps[self.t] if self.held is None else self.held).copy()

    def _many(self, frames):
        for f in frames:
            yield self.step(f)

    def hidden_objects(self, shape):
        return {}

    def forget(self, ids):
        list(ids)


def scene(n):
    """Sky (1) over grass (2) and a red ball (3) standing still: what every frame looks like."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[: H // 2] = (90, 140, 220)
    rgb[H // 2:] = (60, 150, 60)
    rgb[60:76, 100:120] = (220, 30, 30)
    idm = np.where(np.arange(H)[:, None] < H // 2, 1, 2).astype(np.uint16).repeat(W, 1)
    idm[60:76, 100:120] = 3
    return [rgb.copy() for _ in range(n)], [idm.copy() for _ in range(n)]


def tracks3():
    return {1: Track("sky", False), 2: Track("grass", False), 3: Track("sports ball", True)}


def sdr_of(idm):
    objs = {1: {"category": "sky", "isthing": False}, 2: {"category": "grass", "isthing": False},
            3: {"category": "sports ball", "isthing": True}}
    return FrameObjects(idm.copy(), {k: v for k, v in objs.items() if (idm == k).any()})


@pytest.mark.parametrize("batched", [False, True])
def test_the_propagator_steps_over_every_frame_once_refreshes_included(batched):
    frames, maps = scene(21)
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.4, "propagate.sam2_chunk_frames": 4})
    prop = FakePropagator(maps, batched=batched)
    calls = []
    tp = TrackingPass(cfg, fps=5.0, first=maps[0], tracks=tracks3(), propagator=prop,
                      annotate=lambda rgb: calls.append(1) or sdr_of(maps[0]))
    out = list(tp.run(ListFrames(frames)))
    assert [t for t, _, _ in out] == list(range(21))
    assert len(calls) == 10 and len(tp.events) == 10        # a keyframe refresh every 2 frames
    assert prop.t == 20 and tp.counter.steps == 20 and tp.steps_per_frame == 1.0
    assert all((m == maps[0]).all() for _, _, m in out)     # the refreshes confirmed what was followed


def test_a_cut_is_re_proposed_with_new_ids_and_recorded():
    frames, maps = scene(10)
    other = np.zeros((H, W), np.uint16)
    other[:, : W // 2], other[:, W // 2:] = 1, 3            # the new scene: another sky and ball
    motions = {t: CameraMotion(np.eye(3), 0.9, 200, True, None, inliers=180) for t in range(1, 10)}
    motions[6] = CameraMotion(np.eye(3), 0.02, 40, False, "cut")
    prop = FakePropagator(maps, motions, still=True)
    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0})
    tp = TrackingPass(cfg, fps=5.0, first=maps[0], tracks=tracks, propagator=prop,
                      annotate=lambda rgb: sdr_of(other))
    out = {t: m for t, _, m in tp.run(ListFrames(frames))}
    assert set(np.unique(out[5]).tolist()) == {1, 2, 3}
    after = set(np.unique(out[6]).tolist())
    assert after == {4, 5} and tracks[4].category == "sky" and tracks[5].born == 6   # new ids, nothing relinked
    assert [e["mode"] for e in tp.events] == ["cut"] and tp.events[0]["new"] == [4, 5]
    assert 6 in prop.resets                                   # followed from the fresh labels
    assert tp.camera[6]["ok"] is False and tp.camera[6]["reason"] == "cut"
    assert tp.camera[5]["ok"] and tp.camera[5]["inlier_ratio"] == 0.9
    assert tp.steps_per_frame == 1.0


def test_mcr_finds_the_track_at_t_minus_1_where_the_camera_rotation_carried_it():
    """A 15 deg/frame pan: the leading part of the ball is blank; on the raw t-1 map nothing was
    there (it would become a new object), on the t-1 map moved by the rotation the ball was."""
    frames0, maps0 = scene(1)
    R = rotation_matrix(math.radians(15), 0.0, 0.0)
    frames, maps, followed = [], [], []
    Rt = np.eye(3)
    for t in range(4):
        frames.append(rotate_erp(frames0[0], Rt))
        truth = rotate_erp(maps0[0], Rt, interpolation="nearest")
        maps.append(truth)
        f = truth.copy()
        ys, xs = np.nonzero(truth == 3)
        # the ball's leading 40% is uncovered (left unlabeled by the propagator)
        lead = xs >= np.percentile(xs, 60) if t else np.zeros_like(xs, bool)
        f[ys[lead], xs[lead]] = 0
        followed.append(f)
        Rt = R @ Rt
    motions = {t: CameraMotion(R, 0.95, 300, True, None, inliers=285) for t in range(1, 4)}
    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0})

    def annotate(rgb):
        return sdr_of(np.where(rgb[..., 0] > 200, 3, 1).astype(np.uint16))

    tp = TrackingPass(cfg, fps=5.0, first=maps[0], tracks=tracks, propagator=FakePropagator(followed, motions),
                      annotate=annotate)
    out = {t: m for t, _, m in tp.run(ListFrames(frames))}
    for t in (1, 2, 3):
        ball = maps[t] == 3
        assert (out[t][ball] == 3).mean() >= 0.95           # the uncovered part went back to the ball (raw t-1: 0.6)
    assert all(e["mode"] == "mcr" and e["routes"]["existing"] >= 1 for e in tp.events) and len(tp.events) == 3
    assert set(tracks) == {1, 2, 3}                          # no new object (raw t-1: two new tracks)
    assert tp.camera[2]["ypr_deg"][0] == pytest.approx(-15.0, abs=1e-6)


def test_lost_tracks_move_with_the_camera():
    state = RelinkState(lost={7: LostTrack(3, (0.0, 0.2), 0.1, np.zeros(3, np.float32))})
    rotate_state(state, rotation_matrix(math.radians(30), 0.0, 0.0))
    lon, lat = state.lost[7].centroid
    assert lon == pytest.approx(math.radians(30)) and lat == pytest.approx(0.2)


@pytest.mark.parametrize("ypr", [(10.0, 0.0, 0.0), (0.0, 5.0, 0.0), (0.0, 0.0, -7.0), (25.0, -12.0, 8.0)])
def test_camera_angles_are_the_paths_angles(ypr):
    R = rotation_matrix(*np.radians(ypr)).T        # content moves by the inverse of the camera's turn
    assert _camera_ypr_deg(R) == pytest.approx(list(ypr), abs=1e-6)


def appearing(n, at, rot_deg=0.0):
    """The still scene of :func:`scene` with a yellow box (8x10 px, 0.25% of the frame) in the
    grass from frame ``at`` on, seen through a camera that pans ``rot_deg`` per frame. Returns the
    frames, the true maps (box = 4) and what the flow propagator follows: the box's pixels
    unlabeled (no label's motion explains them), the rest as before."""
    frames0, maps0 = scene(1)
    box = (slice(84, 92), slice(40, 50))
    R = rotation_matrix(math.radians(rot_deg), 0.0, 0.0)
    frames, truth, followed = [], [], []
    Rt = np.eye(3)
    for t in range(n):
        rgb, idm = frames0[0].copy(), maps0[0].copy()
        f = idm.copy()
        if t >= at:
            rgb[box] = (240, 220, 20)
            idm[box] = 4
            f[box] = 0
        frames.append(rotate_erp(rgb, Rt))
        truth.append(rotate_erp(idm, Rt, interpolation="nearest"))
        followed.append(rotate_erp(f, Rt, interpolation="nearest"))
        Rt = R @ Rt
    motions = {t: CameraMotion(R, 0.95, 300, True, None, inliers=285) for t in range(1, n)}
    return frames, truth, followed, motions


def sdr_with_box(idm):
    fo = sdr_of(idm)
    if (idm == 4).any():
        fo.objects[4] = {"category": "kite", "isthing": True}
    return fo


@pytest.mark.parametrize("backfill", [0.0, 0.4])
def test_an_object_appearing_in_front_of_labeled_background_is_proposed_at_the_next_check(backfill):
    """Keyframes off: the box leaves 0.25% of the frame unlabeled, far above the coverage rule's
    reach (rho = r0 - 0.6%); the appearance trigger re-annotates at the first check after it
    appeared (frame 6 of the 15-fps grid 3, 6, 9), and once only. With the frames held back
    (refine.backfill_s), the new track also labels the box on frames 4 and 5, where it was
    already there, unlabeled."""
    frames, truth, followed, motions = appearing(12, at=4)
    calls = []
    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0, "refine.backfill_s": backfill})
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks,
                      propagator=FakePropagator(followed, motions, still=True),
                      annotate=lambda rgb: calls.append(1) or sdr_with_box(truth[4]))
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    assert min(tp.coverage_series) > tp.rho                  # the coverage rule alone never fires
    assert [(e["frame"], e["trigger"], e["mode"]) for e in tp.events] == [(6, ["appeared"], "re-sdr")]
    assert 60 <= tp.events[0]["appeared_area"] <= 80 and len(calls) == 1   # 80 px at 30 deg south: 66
    new = tp.events[0]["new"]
    since = 4 if backfill else 6
    assert len(new) == 1 and tracks[new[0]].category == "kite" and tracks[new[0]].born == since
    for t in range(12):
        assert ((out[t] == new[0]) == ((truth[t] == 4) & (t >= since))).all()
    assert tp.events[0].get("backfilled", {}) == ({str(new[0]): 2} if backfill else {})
    assert tp.steps_per_frame == 1.0 and sorted(out) == list(range(12))


@pytest.mark.parametrize("grabcut", [0, 4])
def test_a_new_track_is_carried_back_where_the_camera_rotation_puts_it(grabcut):
    """A 4 deg/frame pan (8.5 px a check): on the held frames the box is where the rotation carried
    it from. Two rows of it the propagator gave the grass on frame 5: GrabCut gives them back
    to the box (yellow against green), none of the grass around; without it they stay grass.
    Frames before the box was there get nothing, even with blank pixels where it will be."""
    frames, truth, followed, motions = appearing(10, at=4, rot_deg=4.0)
    ys, xs = np.nonzero(truth[5] == 4)
    followed[5][ys[:20], xs[:20]] = 2                    # two rows of the box followed as grass
    for t in (2, 3):                                      # a stray blank speck where the box will be
        followed[t][np.ix_(*(np.flatnonzero(np.any(truth[4] == 4, axis=a))[:2] for a in (1, 0)))] = 0
    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0,
                                           "propagate.tuning.checks.backfill_grabcut_iters": grabcut})
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks, propagator=FakePropagator(followed, motions),
                      annotate=lambda rgb: sdr_with_box(truth[6]))
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    (k,) = tp.events[0]["new"]
    assert tracks[k].born == 4 and tp.events[0]["backfilled"] == {str(k): 2}
    if grabcut:
        for t in (4, 5):   # all of the box; outside it at most its rim (the frames are resampled)
            box = truth[t] == 4
            rim = cv2.dilate(box.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~box
            assert (out[t][box] == k).all() and not (out[t][~box & ~rim] == k).any()
            assert (out[t][rim] == k).sum() <= 0.15 * box.sum()
    else:
        assert ((out[5] == k) == ((truth[5] == 4) & (followed[5] == 0))).all()
        assert (out[5][ys[:20], xs[:20]] == 2).all()
        # frame 4 from what the track took on frame 5, widened by the margin (1 px at 256 px)
        assert (out[4][truth[4] == 4] == k).mean() >= 0.85 and not (out[4][truth[4] != 4] == k).any()
    assert not any((out[t] == k).any() for t in (0, 1, 2, 3))


def test_a_new_track_the_background_covered_is_carried_back_by_colour_across_the_seam():
    """A yellow box straddling the seam appears at frame 4 and the propagator carries the grass
    over it (not one pixel unlabeled, as for a small object first seen under the flow's size
    threshold): on the held frames 4 and 5 the track takes it by colour (GrabCut on a crop that
    wraps across the seam), both halves, and none of the grass or sky around."""
    frames0, maps0 = scene(1)
    box = (slice(84, 94), np.r_[W - 6:W, 0:6])
    frames, truth, followed = [], [], []
    for t in range(9):
        rgb, idm = frames0[0].copy(), maps0[0].copy()
        followed.append(idm.copy())
        if t >= 4:
            rgb[box], idm[box] = (240, 220, 20), 4
        frames.append(rgb)
        truth.append(idm)
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.4})
    tracks = tracks3()
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks, propagator=FakePropagator(followed, still=True),
                      annotate=lambda rgb: sdr_with_box(truth[6]))
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    (k,) = tp.events[0]["new"]
    assert tp.events[0]["frame"] == 6 and tracks[k].born == 4 and tp.events[0]["backfilled"] == {str(k): 2}
    for t in range(9):
        assert ((out[t] == k) == ((truth[t] == 4) & (t >= 4))).all()


def test_a_piece_of_the_still_scene_a_refresh_names_afresh_is_not_carried_back():
    """A yellow patch in the grass, there from frame 0 and followed as grass, that the keyframe
    refresh of frame 6 names as an object (a still scene through a turning camera, 4 deg/frame):
    it did not appear, so the held frames keep what the propagator followed."""
    frames, truth, _, motions = appearing(9, at=0, rot_deg=4.0)
    followed = [np.where(m == 4, 2, m).astype(np.uint16) for m in truth]
    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.4})
    tp = TrackingPass(cfg, fps=15.0, first=followed[0], tracks=tracks,
                      propagator=FakePropagator(followed, motions, still=True),
                      annotate=lambda rgb: sdr_with_box(truth[6]))
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    (k,) = tp.events[0]["new"]
    assert tp.events[0]["frame"] == 6 and "backfilled" not in tp.events[0] and tracks[k].born == 6
    assert all((out[t] == followed[t]).all() for t in range(6)) and ((out[6] == k) == (truth[6] == 4)).all()


@pytest.mark.parametrize("grow", [0.2, 1.0])
def test_a_track_a_refresh_completes_is_carried_back_whole(grow):
    """The refresh of frame 6 finds the left half of the box only (the rest it gives the grass);
    the keyframe of frame 9 sees it whole: the track's gain, taken from the grass, is carried
    back over the held frames, where its own half is sure foreground and GrabCut gives it the
    yellow half the grass held, down to frame 4 where the box appeared. With
    backfill_grow_share 1 the held frames keep the half."""
    frames, truth, followed, motions = appearing(12, at=4)
    box = truth[6] == 4
    half = box & (np.arange(W)[None, :] < 45)
    calls = []

    def annotate(rgb):
        calls.append(1)
        return sdr_with_box(np.where(box & ~half, 2, truth[6]).astype(np.uint16)) if len(calls) == 1 \
            else sdr_with_box(truth[9])

    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.6,
                                           "propagate.tuning.checks.backfill_grow_share": grow})
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks,
                      propagator=FakePropagator(followed, motions, still=True), annotate=annotate)
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    assert [(e["frame"], e["trigger"]) for e in tp.events] == [(6, ["appeared"]), (9, ["keyframe"])]
    (k,) = tp.events[0]["new"]
    assert tracks[k].born == 4 and tp.events[0]["backfilled"] == {str(k): 2}
    for t in range(9, 12):
        assert ((out[t] == k) == box).all()
    if grow < 1:
        assert tp.events[1]["backfilled"] == {str(k): 5}
        for t in range(9):
            assert ((out[t] == k) == (box & (t >= 4))).all()
    else:
        assert "backfilled" not in tp.events[1]
        assert all(((out[t] == k) == half).all() for t in (6, 7, 8))
        assert all((out[t][box & ~half] == 2).all() for t in (6, 7, 8))


class ErodingPropagator(FakePropagator):
    """Follows the map it was reset to, giving one more column of the box (id ``k``) to the
    grass each frame: the flow propagator handing a just-found object's rim to the background a
    few pixels a frame."""

    def __init__(self, maps, k):
        super().__init__(maps)
        self.k = k

    def reset(self, frame, idmap):
        super().reset(frame, idmap)
        if self.t:
            self.held = idmap.copy()

    def step(self, frame):
        self.t += 1
        if self.held is None:
            return self.maps[self.t].copy()
        cols = np.flatnonzero((self.held == self.k).any(axis=0))
        if cols.size:
            col = self.held[:, cols[0]]
            col[col == self.k] = 2
        return self.held.copy()


@pytest.mark.parametrize("decay,young_s,refreshes", [(0.15, 2.0, [6, 9, 12]), (1.0, 2.0, [6]),
                                                      (0.15, 0.3, [6])])
def test_a_young_object_losing_its_rim_frame_by_frame_is_refreshed(decay, young_s, refreshes):
    """Keyframes off. The box the appearance trigger finds at frame 6 then loses a column (10% of
    it) to the grass every frame: never half in one check (area_drop stays quiet), 30% by the
    next check, so the decay trigger refreshes it whole at every check; the frame-0 ball does
    not count (not young), nor the box once older than decay_young_s (born at 4: 0.3 s is 4
    frames), nor with decay_share 1."""
    frames, truth, followed, _ = appearing(14, at=4)
    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0,
                                           "propagate.tuning.checks.decay_share": decay,
                                           "propagate.tuning.checks.decay_young_s": young_s})
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks, propagator=ErodingPropagator(followed, 4),
                      annotate=lambda rgb: sdr_with_box(truth[6]))
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    assert [e["frame"] for e in tp.events] == refreshes and tp.events[0]["new"] == [4]
    for e in tp.events[1:]:
        assert e["trigger"] == ["area_decay"] and e["decayed_tracks"] == [4]
    box = truth[6] == 4
    for t in refreshes:
        assert ((out[t] == 4) == box).all()
    # without the trigger 7 of its 10 columns are grass by frame 13 (area_drop waits for half in a check)
    assert (out[13][box] == 4).mean() == pytest.approx(0.9 if refreshes != [6] else 0.3)


@pytest.mark.parametrize("regrow_px", [16.0, 4.0])
def test_a_decayed_young_object_the_refresh_misses_gets_its_rim_back_by_colour(regrow_px):
    """As above, but the SDR of the decay refresh at frame 9 does not find the box (the grass's
    fresh region covers it, as the sky's did the seed 3 bird): relink keeps the eroded box, and
    GrabCut gives it back the yellow columns within decay_regrow_px_at_1024 of it (16: 4 px at
    256 px, all three; 4: 1 px, one), none of the grass."""
    frames, truth, followed, _ = appearing(11, at=4)
    calls = []

    def annotate(rgb):
        calls.append(1)
        return sdr_with_box(truth[6]) if len(calls) == 1 else sdr_of(np.where(truth[6] == 4, 2, truth[6]))

    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0,
                                           "propagate.tuning.checks.decay_regrow_px_at_1024": regrow_px})
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks, propagator=ErodingPropagator(followed, 4),
                      annotate=annotate)
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    assert [(e["frame"], e["trigger"]) for e in tp.events] == [(6, ["appeared"]), (9, ["area_decay"])]
    assert 4 in tp.events[1]["kept"]
    box = truth[6] == 4
    back = 3 if regrow_px > 4 else 1
    assert tp.events[1]["regrown"] == {"4": 8 * back}
    cols = np.flatnonzero(box.any(axis=0))
    assert ((out[9] == 4) == (box & (np.arange(W)[None, :] >= cols[3 - back]))).all()


def test_a_new_track_is_not_carried_back_across_a_cut():
    """A cut at frame 5 re-proposes the scene (the box there unlabeled: nothing named it); the
    box the keyframe refresh of frame 6 finds is carried back to frame 5, the first of the new
    scene, and no further: frame 4's blank pixels there belong to the old scene."""
    frames, truth, followed, motions = appearing(9, at=4)
    motions[5] = CameraMotion(np.eye(3), 0.02, 40, False, "cut")
    calls = []

    def annotate(rgb):
        calls.append(1)
        return sdr_of(np.where(truth[5] == 4, 0, truth[5]).astype(np.uint16)) if len(calls) == 1 \
            else sdr_with_box(truth[6])

    tracks = tracks3()
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.4})
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks,
                      propagator=FakePropagator(followed, motions, still=True), annotate=annotate)
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    assert [(e["frame"], e["mode"]) for e in tp.events] == [(5, "cut"), (6, "re-sdr")]
    (k,) = tp.events[1]["new"]
    box = truth[6] == 4
    assert tracks[k].born == 5 and (out[5][box] == k).all() and (out[4][box] == 0).all()


def test_a_hole_no_refresh_can_label_costs_one_refresh_also_under_a_pan():
    """The fresh SDR leaves the box unlabeled too (nothing it can name): the hole stays, moves with
    the camera (4 deg/frame pan: 8.5 px a check), and does not trigger again at later checks."""
    frames, truth, followed, motions = appearing(16, at=4, rot_deg=4.0)
    calls = []

    def annotate(rgb):
        calls.append(1)
        t = len(calls) and [6, 9, 12, 15][len(calls) - 1]
        m = truth[t].copy()
        m[m == 4] = 0
        return sdr_of(m)

    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0})
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks3(),
                      propagator=FakePropagator(followed, motions), annotate=annotate)
    list(tp.run(ListFrames(frames, fps=15.0)))
    assert [e["frame"] for e in tp.events] == [6] and len(calls) == 1


def test_nothing_appears_on_a_still_scene_through_a_turning_camera():
    frames0, maps0 = scene(1)
    R = rotation_matrix(math.radians(3.0), math.radians(1.0), 0.0)
    frames, maps, Rt = [], [], np.eye(3)
    for _ in range(13):
        frames.append(rotate_erp(frames0[0], Rt))
        maps.append(rotate_erp(maps0[0], Rt, interpolation="nearest"))
        Rt = R @ Rt
    motions = {t: CameraMotion(R, 0.95, 300, True, None, inliers=285) for t in range(1, 13)}
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0})
    tp = TrackingPass(cfg, fps=15.0, first=maps[0], tracks=tracks3(), propagator=FakePropagator(maps, motions),
                      annotate=lambda rgb: pytest.fail("nothing to re-annotate"))
    list(tp.run(ListFrames(frames, fps=15.0)))
    assert tp.events == [] and tp.checks == 4


@pytest.mark.parametrize("trigger", [True, False])
def test_a_textured_object_appearing_on_a_real_panorama_is_found_at_the_next_check(shared_data, trigger):
    """The real propagator on a real panorama panned 1 deg/frame: a patch of a real 360VOT frame
    (20x16 px at 512 px, 0.24% of the frame) appears at frame 4. The propagator leaves it
    unlabeled (no label's motion explains it) but coverage stays above rho, so only the
    appearance trigger re-annotates, at frame 6; without it the patch stays unlabeled."""

    from tasks.backends.flow import build_propagator

    w, h = 512, 256
    pano = cv2.imread(str(shared_data / "erp_images" / "pannellum_examplepano_4096x2048.jpg"))
    pano = cv2.cvtColor(cv2.resize(pano, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    src = cv2.cvtColor(cv2.imread(str(shared_data / "360vot_samples" / "0030_000064.jpg")), cv2.COLOR_BGR2RGB)
    cy, cx = src.shape[0] // 2, src.shape[1] // 2
    patch = cv2.resize(src[cy - 200:cy + 200, cx - 250:cx + 250], (20, 16), interpolation=cv2.INTER_AREA)
    box = (slice(150, 166), slice(200, 220))
    base = np.where(np.arange(h)[:, None] < h // 2, 1, 2).astype(np.uint16).repeat(w, 1)
    R, Rt = rotation_matrix(math.radians(1.0), 0.0, 0.0), np.eye(3)
    frames, truth = [], []
    for t in range(10):
        rgb, idm = pano.copy(), base.copy()
        if t >= 4:
            rgb[box], idm[box] = patch, 3
        frames.append(rotate_erp(rgb, Rt))
        truth.append(rotate_erp(idm, Rt, interpolation="nearest"))
        Rt = R @ Rt
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0, "refine.appear_trigger": trigger})
    calls = []

    def annotate(rgb):
        t = [6, 9][len(calls)]
        calls.append(t)
        return sdr_with_box(np.where(truth[t] == 3, 4, truth[t]).astype(np.uint16))

    tracks = {1: Track("sky", False), 2: Track("grass", False)}
    tp = TrackingPass(cfg, fps=15.0, first=truth[0], tracks=tracks, propagator=build_propagator(cfg, w),
                      annotate=annotate)
    out = {t: m for t, _, m in tp.run(ListFrames(frames, fps=15.0))}
    assert min(tp.coverage_series) > tp.rho
    if not trigger:
        assert tp.events == []
        for t in (5, 9):                                         # the propagator left it unlabeled
            assert (out[t][truth[t] == 3] == 0).mean() > 0.5
        return
    assert [(e["frame"], e["trigger"]) for e in tp.events] == [(6, ["appeared"])] and calls == [6]
    new = tp.events[0]["new"]
    assert len(new) == 1 and tracks[new[0]].category == "kite" and tracks[new[0]].born == 4
    # 4 and 5: carried back (refine.backfill_s) onto what the propagator left unlabeled (most of it;
    # the rest it gave the grass around)
    for t, least in ((4, 0.6), (5, 0.6), (6, 0.9), (9, 0.9)):
        obj = truth[t] == 3
        assert (out[t][obj] == new[0]).mean() > least and (out[t][~obj] == new[0]).sum() < 0.1 * obj.sum()
