"""The CPU propagator: seam wrap, no drift, occlusion, re-acquisition."""

import numpy as np
import pytest

from tasks.backends.flow import FlowPropagator
from tasks.synth import build_scene, render_frames
from tests.support.occlusion import occluded_object_frames


def scene_frames(seed=3, seconds=1.0, fps=10, width=512, objects=5):
    sc = build_scene(seconds=seconds, fps=fps, width=width, seed=seed, objects=objects)
    return sc, list(render_frames(sc))


def test_yaw_rotation_is_followed_exactly_across_the_seam():
    _, frames = scene_frames()
    rgb, ids = frames[0]
    p = FlowPropagator(256)
    p.reset(rgb, ids)
    for k in range(1, 10):
        out = p.step(np.roll(rgb, 5 * k, axis=1))
        truth = np.roll(ids, 5 * k, axis=1)
        assert (out == truth).mean() > 0.995
        assert (out[:, :8] == truth[:, :8]).mean() > 0.99  # the columns that came over the seam


def test_static_scene_does_not_drift():
    _, frames = scene_frames()
    rgb, ids = frames[0]
    p = FlowPropagator(256)
    p.reset(rgb, ids)
    for _ in range(15):
        out = p.step(rgb)
    assert (out == ids).mean() > 0.998


def test_moving_objects_keep_their_masks_and_the_seam_object_one_id():
    sc, frames = scene_frames(seed=0, seconds=2.0, fps=10, width=512)
    p = FlowPropagator(256)
    p.reset(frames[0][0], frames[0][1])
    seam = sc.roles["seam"][0]
    ious = []
    for rgb, gt in frames[1:]:
        out = p.step(rgb)
        for t in (seam, sc.roles["pole"][0]):
            a, b = gt == t, out == t
            if a.any():
                ious.append((a & b).sum() / (a | b).sum())
        g = gt == seam
        if g[:, 0].any() and g[:, -1].any():   # crossing now: one id on both sides
            assert set(np.unique(out[g]).tolist()) - {0} <= {seam} | set(np.unique(out[~g]).tolist())
            assert (out[g] == seam).mean() > 0.8
    assert np.mean(ious) > 0.85


def test_occluded_object_is_absent_then_comes_back_with_its_id():
    sc, frames = scene_frames(seed=0, seconds=4.0, fps=15, width=512)
    hidden = sc.roles["occluded"][0]
    p = FlowPropagator(256)
    p.reset(frames[0][0], frames[0][1])
    areas = []
    for rgb, gt in frames[1:]:
        out = p.step(rgb)
        areas.append(((gt == hidden).sum(), (out == hidden).sum()))
    gt_a = np.array([a for a, _ in areas])
    pr_a = np.array([b for _, b in areas])
    full = gt_a.max()
    occluded = gt_a < 0.05 * full
    assert occluded.any()
    assert (pr_a[occluded] < 0.2 * full).all()      # absent while hidden, not smeared
    last = np.flatnonzero(occluded)[-1]
    back = gt_a[last + 1:] > 0.6 * full
    assert back.any() and (pr_a[last + 1:][back] > 0.5 * gt_a[last + 1:][back]).mean() > 0.8


def test_a_correction_that_hands_back_a_sliver_keeps_the_objects_full_view():
    """Re-SDR while the object goes behind another: relinking keeps its track from the
    propagator's own sliver. Starting afresh from that sliver forgot the object's full view and
    it was never found again (synth seed 2)."""
    sc, frames = scene_frames(seed=2, seconds=4.0, fps=15, width=512)
    hidden = sc.roles["occluded"][0]
    gt_a = np.array([(gt == hidden).sum() for _, gt in frames])
    full = gt_a.max()
    going = int(np.flatnonzero(gt_a == 0)[0]) - 1          # the last sliver before it is gone
    assert 0 < gt_a[going] < 0.05 * full
    p = FlowPropagator(256)
    p.reset(frames[0][0], frames[0][1])
    for rgb, _ in frames[1:going + 1]:
        out = p.step(rgb)
    # the correction hands back the object's true sliver (the propagator may already have hidden
    # it: tuning.vanish) on the propagator's labels
    out[frames[going][1] == hidden] = hidden
    p.reset(frames[going][0], out)
    pr_a = np.array([(p.step(rgb) == hidden).sum() for rgb, _ in frames[going + 1:]])
    after = gt_a[going + 1:]
    back = after > 0.6 * full
    assert back.any() and (pr_a[back] > 0.5 * after[back]).mean() > 0.8


def test_an_object_dropped_by_a_correction_coasts_until_forgotten():
    """A correction without an object keeps it coasting as hidden (it may be occluded) and it
    comes back where its colour shows; an id merged into another object is forgotten and never
    painted again."""
    sc, frames = scene_frames()
    rgb, ids = frames[0]
    obj = sorted(set(np.unique(ids).tolist()) - {0, 1, 2})[0]
    without = frames[1][1].copy()
    without[without == obj] = 1
    seen = {}
    for forget in (False, True):
        p = FlowPropagator(256)
        p.reset(rgb, ids)
        p.step(frames[1][0])
        p.reset(frames[1][0], without)
        if forget:
            p.forget([obj])
        seen[forget] = sum(int((p.step(f) == obj).any()) for f, _ in frames[2:])
    assert seen[False] > 0 and seen[True] == 0


def test_step_before_reset_and_mismatched_map_are_errors():
    p = FlowPropagator(64)
    with pytest.raises(RuntimeError):
        p.step(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError):
        p.reset(np.zeros((32, 64, 3), np.uint8), np.zeros((10, 10), np.uint16))


def test_the_methods_seam_blind_propagation_loses_what_crosses_the_seam():
    """The baseline switch (propagate.seam_aware=false) really is blind to the seam."""
    sc, frames = scene_frames()
    rgb, ids = frames[0]
    obj = sorted(set(np.unique(ids).tolist()) - {0, 1, 2})[0]
    cols = np.flatnonzero((ids == obj).any(axis=0))
    shift = ids.shape[1] - 8 - int(cols.max())          # the object's right edge 8 px before the seam
    rgb, ids = np.roll(rgb, shift, axis=1), np.roll(ids, shift, axis=1)
    blind, aware = FlowPropagator(256, seam_aware=False), FlowPropagator(256)
    blind.reset(rgb, ids)
    aware.reset(rgb, ids)
    for k in range(1, 7):
        f = np.roll(rgb, 4 * k, axis=1)
        truth = np.roll(ids, 4 * k, axis=1)
        b, a = blind.step(f), aware.step(f)
    m = truth == obj
    assert m[:, :10].any()                               # it has crossed the seam
    assert (a[m] == obj).mean() > 0.95
    assert (b[m] == obj).mean() < (a[m] == obj).mean() - 0.1


# -- real footage: a real panorama re-shot through a moving camera (issue 10) -----------------------
import cv2  # noqa: E402

from tasks.backends.warp import WarpPropagator  # noqa: E402
from tasks.config import FlowTuning  # noqa: E402
from tasks.geometry.camera_motion import angle_between_deg  # noqa: E402
from tasks.geometry.erp import lonlat_axes, spherical_iou  # noqa: E402
from tasks.geometry.rotation import rotate_erp, rotation_matrix  # noqa: E402

W_REAL = 512


@pytest.fixture(scope="module")
def real_pano(shared_data):
    im = cv2.imread(str(shared_data / "erp_images" / "pannellum_examplepano_4096x2048.jpg"))
    return cv2.resize(cv2.cvtColor(im, cv2.COLOR_BGR2RGB), (W_REAL, W_REAL // 2), interpolation=cv2.INTER_AREA)


def cap(lon_deg, lat_deg, radius_deg, h=W_REAL // 2, w=W_REAL):
    """A disc on the sphere (the prompted object): the same shape wherever it sits."""
    lon, lat = lonlat_axes(h, w)
    lon, lat = np.meshgrid(lon, lat)
    c = np.radians([lon_deg, lat_deg])
    cosd = np.sin(lat) * np.sin(c[1]) + np.cos(lat) * np.cos(c[1]) * np.cos(lon - c[0])
    return cosd >= np.cos(np.radians(radius_deg))


def handheld(n, seed=0):
    """Yaw drift with smooth pitch and roll up to about +-12 deg: the content rotation per frame."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    ph = rng.uniform(0, 2 * np.pi, 3)
    yaw = 1.2 * t + 3 * np.sin(2 * np.pi * t / 37 + ph[0])
    pitch = 12 * np.sin(2 * np.pi * t / 45 + ph[1]) * np.sin(np.pi * t / n)
    roll = 12 * np.sin(2 * np.pi * t / 31 + ph[2]) * np.sin(np.pi * t / n)
    return [rotation_matrix(*np.radians([y - yaw[0], p, r])).T for y, p, r in zip(yaw, pitch, roll)]


@pytest.fixture(scope="module")
def reshot(real_pano):
    """30 frames of the panorama through a handheld camera, with three prompted objects: one on
    the seam, one at latitude -60 deg, one in front; ground truth is each mask rotated alike."""
    masks = {3: cap(180, -20, 9), 4: cap(40, -62, 10), 5: cap(-40, -12, 8)}
    ids = np.zeros((W_REAL // 2, W_REAL), np.uint16)
    for k, m in masks.items():
        ids[m] = k
    rots = handheld(31)
    return [rotate_erp(real_pano, R) for R in rots], [rotate_erp(ids, R) for R in rots], rots


def test_real_panorama_through_a_handheld_camera_keeps_every_object(reshot):
    frames, truths, _ = reshot
    flow, warp = FlowPropagator(256), WarpPropagator(256)
    for p in (flow, warp):
        p.reset(frames[0], truths[0])
    for f in frames[1:]:
        out, base = flow.step(f), warp.step(f)
    for k in (3, 4, 5):
        j, jb = spherical_iou(out == k, truths[-1] == k), spherical_iou(base == k, truths[-1] == k)
        assert j >= 0.9 and j >= jb, (k, j, jb)


def test_seam_object_keeps_one_id_under_camera_motion(reshot):
    frames, truths, _ = reshot
    p = FlowPropagator(256)
    p.reset(frames[0], truths[0])
    for f, truth in zip(frames[1:], truths[1:]):
        out = p.step(f)
        g = truth == 3
        assert (out[g] == 3).mean() > 0.85
        assert set(np.unique(out[out > 0]).tolist()) <= {3, 4, 5}


def test_camera_rotation_is_measured_and_exposed(reshot):
    frames, truths, rots = reshot
    p = FlowPropagator(256)
    assert p.last_motion is None
    p.reset(frames[0], truths[0])
    for t in range(1, 4):
        p.step(frames[t])
        m = p.last_motion
        assert m.ok and m.inlier_ratio > 0.5
        assert angle_between_deg(m.rotation, rots[t] @ rots[t - 1].T) < 0.5
        assert p.last_motion.as_dict()["ok"] is True


@pytest.mark.parametrize("bad", ["grey", "black", "cut"])
def test_a_frame_without_a_measurable_rotation_falls_back_to_flow(reshot, bad):
    frames, truths, _ = reshot
    p = FlowPropagator(256)
    p.reset(frames[0], truths[0])
    p.step(frames[1])
    if bad == "cut":
        other = np.ascontiguousarray(np.flipud(frames[2]))   # another scene: sky below, ground above
        frame = cv2.GaussianBlur(other, (0, 0), 3)
    else:
        frame = np.full_like(frames[2], 128 if bad == "grey" else 0)
    out = p.step(frame)
    assert out.shape == truths[0].shape and out.dtype == np.uint16
    assert not p.last_motion.ok and p.last_motion.reason in ({"cut", "too_few_matches", "low_inliers"}
                                                              if bad == "cut" else {"uniform"})
    p.step(frames[3])                                        # and it carries on afterwards


@pytest.mark.parametrize("seed", [0, 3])
def test_a_wholly_hidden_object_has_no_pixels_left_on_its_occluder(seed):
    """Issue 10: on the frames where the occluded object is wholly behind its occluder it has no
    pixel at all: a sliver of it left on the occluder's outline is a false label (J&F 0 on each of
    those frames; synthetic handheld seeds 0/2/3: 35-70 px on 2/5/7 frames). It still comes back."""
    sc, frames = scene_frames(seed=seed, seconds=4.0, fps=15, width=512)
    hidden = sc.roles["occluded"][0]
    p = FlowPropagator(256)
    p.reset(frames[0][0], frames[0][1])
    gt_a, pr_a = [], []
    for rgb, gt in frames[1:]:
        out = p.step(rgb)
        gt_a.append((gt == hidden).sum())
        pr_a.append((out == hidden).sum())
    gt_a, pr_a = np.array(gt_a), np.array(pr_a)
    gone = gt_a == 0
    assert gone.any()
    assert (pr_a[gone] == 0).all()
    last = np.flatnonzero(gone)[-1]
    back = gt_a[last + 1:] > 0.6 * gt_a.max()
    assert back.any() and (pr_a[last + 1:][back] > 0.5 * gt_a[last + 1:][back]).mean() > 0.8


def test_occluded_object_coasts_and_comes_back_under_camera_motion():
    """The synthetic occlusion (seed 0) seen through a turning camera: the hidden object is
    absent while hidden and comes back with its id where it reappears."""
    sc, frames = scene_frames(seed=0, seconds=4.0, fps=15, width=512)
    hidden = sc.roles["occluded"][0]
    d = np.pi / 180
    rots = [rotation_matrix(0.8 * t * d, 3 * np.sin(t / 9) * d, 2 * np.sin(t / 7) * d).T for t in range(len(frames))]
    views = [(rotate_erp(rgb, R), rotate_erp(ids, R)) for (rgb, ids), R in zip(frames, rots)]
    p = FlowPropagator(256)
    p.reset(*views[0])
    areas = []
    for rgb, gt in views[1:]:
        out = p.step(rgb)
        areas.append(((gt == hidden).sum(), (out == hidden).sum(), spherical_iou(gt == hidden, out == hidden)))
    gt_a = np.array([a for a, _, _ in areas])
    pr_a = np.array([b for _, b, _ in areas])
    full = gt_a.max()
    occluded = gt_a < 0.05 * full
    assert occluded.any()
    assert (pr_a[occluded] < 0.2 * full).all()
    last = np.flatnonzero(occluded)[-1]
    back = gt_a[last + 1:] > 0.6 * full
    assert back.any() and (pr_a[last + 1:][back] > 0.5 * gt_a[last + 1:][back]).mean() > 0.8


def test_an_object_appearing_in_front_of_the_background_is_left_unlabeled():
    """The synthetic 'appears' object (seed 2) pops up in front of the still background: its
    pixels are left unlabeled, so coverage drops and the tracking pass proposes it, instead of
    being carried on as the background it covers (found 8 frames late, CLI J&F 0.81)."""
    sc, frames = scene_frames(seed=2, seconds=3.0, fps=10, width=512)
    k = sc.roles["appears"][0]
    p = FlowPropagator(256)
    p.reset(*frames[0])
    seen = 0
    for rgb, gt in frames[1:]:
        out = p.step(rgb)
        obj = gt == k
        if obj.sum() >= 200:
            seen += 1
            assert (out[obj] == 0).mean() > 0.6
    assert seen >= 3
    # the rest of the frame keeps its labels
    assert (out[gt != k] > 0).mean() > 0.98


@pytest.mark.slow
def test_photo_textured_moving_objects_keep_their_parts(shared_data):
    """Issue 10 §2: textured, multi-coloured objects keep their parts. Objects cut from real photos
    (the moving-camera look of tasks.synth) moving over sky and grass: in the outline re-decisions
    a textured object's colour distances are scaled by its local spread (propagate.tuning.flow.
    texture_spread), so its pixels are not given away to the flat background beside it
    (mean J of the seam, pole and occluder objects over 2 s: 0.58 with plain distances, 0.65)."""
    import dataclasses

    from tasks.config import FlowTuning
    from tasks.synth.camera import camera_path
    from tasks.synth.look import load_photos

    photos = load_photos(sorted((shared_data / "erp_images").glob("*.jpg"))
                         + sorted((shared_data / "360vot_samples").glob("*.jpg")))
    sc = build_scene(seconds=2.0, fps=10, width=512, seed=0, camera="handheld", photos=photos)
    sc = dataclasses.replace(sc, camera=camera_path("still", sc.n_frames, sc.fps), lighting=None, jpeg_quality=None)
    frames = list(render_frames(sc))
    objs = [o.track_id for o in sc.objects if o.role in ("seam", "pole", "occluder")]

    def mean_j(tuning):
        p = FlowPropagator(256, tuning=tuning)
        p.reset(*frames[0])
        js = []
        for rgb, gt in frames[1:]:
            out = p.step(rgb)
            js += [((out == k) & (gt == k)).sum() / ((out == k) | (gt == k)).sum() for k in objs if (gt == k).sum() > 50]
        return float(np.mean(js))

    tuned, plain = mean_j(FlowTuning()), mean_j(FlowTuning(texture_spread=0))
    assert tuned > 0.62 and tuned > plain + 0.05, (tuned, plain)


@pytest.mark.slow
def test_textured_objects_moving_on_their_own_under_a_handheld_camera_do_not_lag(shared_data):
    """Issue 10 §2 / §1.3: photo-textured objects moving on their own, seen through a handheld camera
    (changing light, JPEG). The per-pixel labels lagged behind such objects frame by frame (DIS at
    the working width underestimates their motion, and the flow behind them kept reading their
    label from the key frame); feature tracks inside each object measure its rotation and the object
    is drawn from its key view moved by the composed rotations (propagate.tuning.flow.track_*,
    rigid_*). 2 s at 1024 px, 15 fps (the benchmark's clips), mean J over the second second of the
    seam, pole and occluder objects: 0.56 without the tracks (track_min_points=0), 0.96 with them."""
    from tasks.config import FlowTuning
    from tasks.synth.look import load_photos

    photos = load_photos(sorted((shared_data / "erp_images").glob("*.jpg"))
                         + sorted((shared_data / "360vot_samples").glob("*.jpg")))
    sc = build_scene(seconds=2.0, fps=15, width=1024, seed=0, camera="handheld", photos=photos)
    frames = list(render_frames(sc))
    objs = [o.track_id for o in sc.objects if o.role in ("seam", "pole", "occluder")]

    def late_j(tuning):
        p = FlowPropagator(512, tuning=tuning)   # the pipeline's working width
        p.reset(*frames[0])
        js = []
        for i, (rgb, gt) in enumerate(frames[1:], 1):
            out = p.step(rgb)
            if i >= len(frames) // 2:
                js += [((out == k) & (gt == k)).sum() / ((out == k) | (gt == k)).sum()
                       for k in objs if (gt == k).sum() > 50]
        return float(np.mean(js))

    tracked, flow_only = late_j(FlowTuning()), late_j(FlowTuning(track_min_points=0))
    assert tracked > 0.9 and tracked > flow_only + 0.2, (tracked, flow_only)


def test_small_objects_on_a_still_scene_do_not_drift_with_the_residual_flow(shared_data):
    """A real panorama re-shot through a steady pan (sub-pixel steps: every frame resampled anew),
    with small prompted objects (issue 10: the 240-990-pixel objects were the ones under J 0.95):
    the residual flow's noise adds up frame by frame unless still pixels read the key frame through
    the camera rotation anchored on the key (propagate.tuning.flow.anchor_px). Mean J over 24
    frames >= 0.97 for each, and anchoring off is measurably worse (the case is not vacuous)."""
    im = cv2.imread(str(shared_data / "360vot_samples" / "0098_000193.jpg"))
    big = cv2.resize(cv2.cvtColor(im, cv2.COLOR_BGR2RGB), (2 * W_REAL, W_REAL), interpolation=cv2.INTER_AREA)
    h, w = W_REAL // 2, W_REAL
    masks = {1: cap(-31, 32, 2.5), 2: cap(107, 17, 3.0), 3: cap(-115, -11, 2.0)}
    ids = np.zeros((h, w), np.uint16)
    for k, m in masks.items():
        ids[m] = k
    rots = [rotation_matrix(np.radians(-1.37 * t), 0.0).T for t in range(25)]
    frames = [cv2.resize(rotate_erp(big, R), (w, h), interpolation=cv2.INTER_AREA) for R in rots]
    truths = [rotate_erp(ids, R) for R in rots]
    means = {}
    for px in (3.0, 0.0):
        p = FlowPropagator(256, tuning=FlowTuning(anchor_px=px))
        p.reset(frames[0], ids)
        js = {k: [] for k in masks}
        for f, truth in zip(frames[1:], truths[1:]):
            out = p.step(f)
            for k in masks:
                js[k].append(spherical_iou(out == k, truth == k))
        means[px] = {k: float(np.mean(v)) for k, v in js.items()}
    assert all(j >= 0.97 for j in means[3.0].values()), means
    assert np.mean(list(means[3.0].values())) > np.mean(list(means[0.0].values())) + 0.01, means


@pytest.mark.slow
def test_a_small_still_object_is_not_taken_for_a_moving_one(shared_data, tmp_path):
    """The barn of the real re-shot benchmark (360VOT 0115, 238 px at 1024 columns, 28 working
    pixels) through its handheld camera path, H.264-encoded as the benchmark's clip: the fit of its
    interior flow is loose, and a fixed threshold on the fitted rotation's *angle* called a spin
    about its own centre that moved its pixels 0.02 px "own motion"; it was then moved and
    re-outlined by colour: J 0.98 -> 0.67 on frames 10-12 (issue 10). The own-motion test is on
    how far the motion moves the object's pixels and on the fit's standard error
    (propagate.tuning.flow.own_motion_*): J >= 0.97 on every frame."""
    import json
    from itertools import islice
    from pathlib import Path

    from tasks.formats import rle
    from tasks.synth.camera import camera_path, render_still, rotate_labels
    from tasks.video.frames import Mp4Writer

    doc = json.loads((Path(__file__).parents[2] / "bench" / "real_objects.json").read_text())["scenes"]["360vot_0115"]
    barn = next(o for o in doc["objects"] if o["name"] == "barn")
    im = cv2.imread(str(shared_data / "360vot_samples" / "0115_000216.jpg"))
    still = rotate_erp(cv2.resize(cv2.cvtColor(im, cv2.COLOR_BGR2RGB), (2048, 1024), interpolation=cv2.INTER_AREA),
                       np.asarray(doc["R0"], np.float64))
    ids = rle.decode(barn["rle"]).astype(np.uint16)
    # the benchmark's path for this scene (its first 15 frames: the false motion was at 10-12), at
    # the pipeline's sizes (at 512 columns the barn is big enough for the loose fit not to matter)
    path = camera_path("handheld", 30, 10, seed=3)
    truths = list(islice(rotate_labels(ids, path), 15))
    clip = tmp_path / "clip.mp4"
    with Mp4Writer(clip, 1024, 512, 10, crf=16) as out:     # the codec's noise is what the fit sees
        for f in islice(render_still(still, path, 1024), 15):
            out.write(f)
    cap, frames = cv2.VideoCapture(str(clip)), []
    while (got := cap.read())[0]:
        frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    assert len(frames) == len(truths)
    p = FlowPropagator(512)
    p.reset(frames[0], truths[0])
    js = [spherical_iou(p.step(f) == 1, t == 1) for f, t in zip(frames[1:], truths[1:])]
    assert min(js) >= 0.97, np.round(js, 3)


@pytest.mark.slow
def test_an_object_coming_out_from_behind_another_is_followed_again(shared_data):
    """Issue 10: photo-textured synthetic clip through a handheld camera (the benchmark's seed 2):
    the animal goes behind the signboard and comes out again. Two things lost it: the feature
    tracks of its label, half on the occluder while it went behind, gave it the occluder's motion as
    its own (3-12 px/frame), so its predicted place drifted away; and it was back only where half of
    its remembered view matched again, so a sliver coming out stayed unlabeled (it is back where its
    colours match significantly better than around: propagate.tuning.flow.reacquire_*). On the
    benchmark's H.264 clip, propagator alone, the animal's mean J went 0.32 -> 0.71; here (frames
    as rendered) the mean J is >= 0.6 and it is back within 5 frames of showing a quarter of itself
    (before: the assertion fails)."""
    gt_a, _, js = occluded_object_frames(shared_data, 2)
    hidden = np.flatnonzero(gt_a == 0)
    assert hidden.size, "the clip must hide the object"
    after = np.arange(hidden[-1] + 1, len(gt_a))
    quarter = after[gt_a[after] >= 0.25 * gt_a.max()]
    assert np.mean(js) >= 0.6, np.round(js, 2)
    assert (js[quarter[0]:quarter[0] + 5] > 0.3).any() and js[quarter[0] + 5:].mean() > 0.6, np.round(js, 2)


def test_an_object_going_behind_another_is_not_given_the_occluders_motion(shared_data):
    """Issue 10: an object going behind another loses 2-7% of its view a frame; by the fading
    recent maximum alone its partial views counted as full for frames, its feature tracks and
    closed-loop centroid (pulled by the occluder) gave it an own motion it does not have, and it
    coasted away while hidden. While it touches another object a view is full only at
    propagate.tuning.flow.contact_full_view of its solid angle before the contact. Photo-textured
    handheld clip (the benchmark's seed 1, frames as rendered), propagator alone: once a quarter of
    the animal is out again its mean spherical J was 0.85 before the rule (a862509^), 0.98 with it."""
    gt_a, _, js = occluded_object_frames(shared_data, 1)
    hidden = np.flatnonzero(gt_a == 0)
    assert hidden.size, "the clip must hide the object"
    assert (js[hidden] == 1.0).all(), "no pixel of it while it is wholly hidden"
    after = np.arange(hidden[-1] + 1, len(gt_a))
    assert js[after[gt_a[after] >= 0.25 * gt_a.max()][0]:].mean() > 0.93, np.round(js, 2)


def test_objects_touching_since_first_seen_are_not_an_occlusion():
    """Issue 10: two pieces of one object (or two neighbours) touching from the first frame are no
    occlusion in progress: counting them held a flower's dark piece out of full view for the whole
    clip (synthetic still seed 3 auto: a seam split). An object that comes to touch another later is
    one."""
    h, w = 64, 128
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 1] = 120
    ids = np.zeros((h, w), np.uint16)
    ids[20:40, 10:30], ids[20:40, 30:40] = 1, 2          # a flower and its dark piece, touching
    ids[20:40, 80:90] = 3                               # alone
    rgb[ids == 1], rgb[ids == 2], rgb[ids == 3] = (200, 40, 40), (90, 20, 20), (40, 40, 200)
    p = FlowPropagator(128)
    p.reset(rgb, ids)
    p.step(rgb)
    assert p._contact == set()
    ids2 = ids.copy()
    ids2[20:40, 90:100] = 4                             # something arrives against object 3
    rgb2 = rgb.copy()
    rgb2[ids2 == 4] = (220, 220, 40)
    assert p._contacts(ids2, {1, 2, 3, 4}) >= {3}       # 3 was first seen with no neighbour
