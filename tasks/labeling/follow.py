"""Following a video with a propagator, frame by frame, from one frame's id map.

Used by the tracking pass (:mod:`tasks.stages.propagate`); lives here so that stages do not
import each other (issue 10, "The house").
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from tasks.backends.superpixel import to_lab
from tasks.geometry.components import wrap_components
from tasks.geometry.erp import (
    lonlat_axes,
    lonlat_to_vec,
    row_solid_angles,
    vec_to_lonlat,
    wrap_pad,
    x_of_lon,
    y_of_lat,
)
from tasks.geometry.remap import apply_table, erp_table, grid_directions
from tasks.geometry.rotation import check_rotation
from tasks.labeling import prompts as prompts_mod
from tasks.labeling.coverage import coverage, track_areas
from tasks.labeling.mcr import route_and_fill
from tasks.labeling.merge import Contacts
from tasks.labeling.relink import RelinkState, relink, remember, rotate_state
from tasks.labeling.sdr import FrameObjects
from tasks.labeling.tracks import Track
from tasks.video.framestore import Frames


def follow(frames: Frames, start: int, idmap: np.ndarray, propagator, prompts=None, *,
           chunk: int = 1, every: int = 0, motions: bool = False) -> Iterator[tuple]:
    """Yield ``(t, frame, idmap)`` from ``start`` on; with ``motions``, ``(t, frame, idmap, motion)``
    where ``motion`` is the camera motion the propagator measured for that frame (its
    ``last_motion`` after a single step) or None (first frame, batched steps, or a propagator
    that does not measure it).

    The caller may ``propagator.reset`` after an item to correct the state (the tracking pass
    does, at its check frames, every ``every`` frames); the next step continues from there. A
    propagator with ``step_many`` (SAM2) gets frames ``chunk`` at a time so its image encoder
    runs batched; a chunk never runs past a prompt frame or a check frame, where the state may
    be reset. Every frame after ``start`` costs exactly one propagator step.
    """
    width = frames.width
    many = getattr(propagator, "step_many", None)
    it = frames.iter(start)
    first = next(it, None)
    if first is None:
        return
    propagator.reset(first, idmap)
    yield (start, first, idmap, None) if motions else (start, first, idmap)
    t = start + 1
    while t < len(frames):
        n = 1
        if many is not None and chunk > 1:
            n = min(chunk, len(frames) - t)
            for k in range(n):
                u = t + k
                if (every and u % every == 0) or (prompts is not None and prompts.at(u, width) is not None):
                    n = k + 1  # stop at the first frame where the state may change
                    break
        batch = [next(it) for _ in range(n)]
        outs = list(many(batch)) if n > 1 else [propagator.step(batch[0])]
        motion = getattr(propagator, "last_motion", None) if n == 1 else None
        for frame, cur in zip(batch, outs):
            if prompts is not None:
                p = prompts.at(t, width)
                if p is not None:
                    cur = prompts_mod.apply(cur, p)
                    propagator.reset(frame, cur)
            yield (t, frame, cur, motion) if motions else (t, frame, cur)
            t += 1


class StepCounter:
    """A propagator seen through a counter of the frames it was stepped over.

    The tracking pass runs the propagator once per frame (issue 10 §3: on a GPU SAM2 ran over
    every video twice, once in propagate and once in refine); ``steps`` is how that is checked.
    Everything else (``reset``, ``hidden_objects``, ``last_motion`` ...) is the propagator's own.
    """

    def __init__(self, inner) -> None:
        self._inner = inner
        self.steps = 0

    def step(self, frame: np.ndarray) -> np.ndarray:
        self.steps += 1
        return self._inner.step(frame)

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if name != "step_many":
            return attr

        def step_many(frames):
            for out in attr(frames):
                self.steps += 1
                yield out

        return step_many


@dataclass
class _Before:
    """The frame before the next check (MCR's t-1)."""

    idmap: np.ndarray
    rgb: np.ndarray


@dataclass
class _Held:
    """A followed frame not written yet (``refine.backfill_s``): its id map may still change."""

    t: int
    frame: np.ndarray
    idmap: np.ndarray
    rotation: np.ndarray | None    # the camera rotation from frame t-1 to t (None: not known)


class TrackingPass:
    """Following the video once, with the auto-refine phase at its check frames [M §1.2(e), §1.3].

    On the check grid (``t % ceil(fps / 5) == 0``) a frame is re-annotated when

    * its coverage falls under rho = r0 - tau * ceil(fps / 5) (r0 = coverage of frame 0), measured
      on the sphere by default (the method uses pixels, see :mod:`tasks.labeling.coverage`);
    * an object's area (solid angle) dropped by more than half since the previous check [M §6 row 2];
    * a keyframe is due (every ``keyframe_interval_s``; the coverage rule cannot see an object that
      appears in front of labeled background);
    * something appeared (``refine.appear_trigger``): pixels labeled at the previous check, moved
      by the camera rotation since, are unlabeled in a piece of the watched size. The flow
      propagator leaves what no label's motion explains unlabeled; a 0.25%-of-the-frame object
      stays far above rho, so without this it waited for the next keyframe or another trigger;
    * a young object decays (``checks.decay_share``): a thing track a refresh found within
      ``decay_young_s`` lost that share of its area since the last refresh, a few pixels a
      frame (never half in one check). If the fresh SDR misses it, GrabCut gives it back its
      rim (:meth:`_regrow`).

    A coverage drop alone goes to MCR (:mod:`tasks.labeling.mcr`), with the t-1 map moved by the
    camera rotation; otherwise the fresh SDR is re-linked to the current tracks
    (:mod:`tasks.labeling.relink`), and following resumes from the corrected map: the propagator
    steps over every frame exactly once (``counter.steps``). A track the fresh SDR shows to be a
    piece of another object is marked ``merged_into`` (the ``refine`` stage then rewrites the
    earlier frames).

    A thing track a refresh creates, or grows from the background by ``backfill_grow_share``,
    takes its pixels on the frames held back since (``refine.backfill_s``, :meth:`_backfill`):
    the unlabeled pixels where its mask, moved back by the camera rotation, was, and those of a
    stuff region GrabCut gives it. The frames come out that much later, in order.

    Camera motion (issue 10 §2): every frame's rotation from the previous one is recorded
    (``camera``); the remembered positions of lost tracks move with it, so re-identification
    looks for them where the scene carried them. A cut (the rotation estimator's reason
    ``cut``: nothing in the two frames agrees) is not followed across: the frame is re-proposed
    from scratch and every object on it gets a new id.
    """

    def __init__(self, config, *, fps: float, first: np.ndarray, tracks: dict[int, Track], propagator,
                 annotate: Callable[[np.ndarray], FrameObjects], prompts=None,
                 question: Callable | None = None, estimate: Callable | None = None) -> None:
        rc = config.refine
        self.config = config
        self.rc = rc
        self.fps = fps
        self.tracks = tracks
        self.first = first
        self.counter = StepCounter(propagator)
        self.annotate = annotate
        self.prompts = prompts
        self.question = question            # (prev_rgb, prev_idmap, rgb) -> ask(region, track) | None
        self.estimate = estimate            # (prev_rgb, rgb) -> CameraMotion, when the propagator has none
        width = first.shape[1]
        self.step = config.refine_step(fps)
        self.key_every = 0
        if rc.keyframe_interval_s > 0:
            self.key_every = max(self.step, int(round(rc.keyframe_interval_s * fps / self.step)) * self.step)
        # the per-object trigger watches objects of some size; slivers come and go by themselves
        ct = config.propagate.tuning.checks
        self.min_area = max(int(ct.watch_min_area_factor * config.min_area(width, config.propagate.min_area_px_at_2048)),
                            int(ct.watch_min_share * width * width / 2))
        self.r0 = coverage(first, rc.coverage)
        self.rho = self.r0 - rc.tau * self.step
        self.state = RelinkState()
        self.last_areas = track_areas(first, sphere=True)
        self._ref_areas = dict(self.last_areas)     # each track's area at the last refresh (or max since)
        self._decay = ct.decay_share
        self._decay_young = int(round(ct.decay_young_s * fps))
        self._regrow_px = max(1, int(round(ct.decay_regrow_px_at_1024 * width / 1024)))
        self._regrow_cap = ct.decay_regrow_max_growth
        self.events: list[dict] = []
        self.checks = 0
        self.coverage_pixel: list[float] = []
        self.coverage_sphere: list[float] = []
        self.camera: list[dict] = []
        self.contacts = Contacts() if rc.merge_split_tracks else None
        if self.contacts is not None:
            self.contacts.observe(first, tracks)
        self._before: _Before | None = None
        self._orientation = np.eye(3)
        self._textured: np.ndarray | None = None
        self._gap = False
        # the appearance trigger: unlabeled pixels after the last check and the camera rotation since
        self.appear_min = ct.appear_area_factor * self.min_area if rc.appear_trigger else 0.0
        self._appear_margin = int(round(ct.appear_margin_px_at_1024 * width / 1024))
        self._blank_ref: np.ndarray | None = None
        self._since_check = np.eye(3)
        self._after_check(first)
        # new tracks carried back over the frames held back (refine.backfill_s)
        self.hold = int(round(rc.backfill_s * fps))
        self._held: deque[_Held] = deque()
        self._backfill_margin = int(round(ct.backfill_margin_px_at_1024 * width / 1024))
        self._absent_px = max(1, config.min_area(width, config.propagate.min_area_px_at_2048))
        self._backfill_share = ct.backfill_min_share
        self._backfill_grow = ct.backfill_grow_share
        self._backfill_change = ct.backfill_change_lab
        self._backfill_change_share = ct.backfill_change_share
        self._grabcut_iters = ct.backfill_grabcut_iters
        self._grabcut_ring = max(2, int(round(ct.backfill_ring_px_at_1024 * width / 1024)))
        self._grabcut_side = ct.backfill_grabcut_max_side
        self._scene_from = 0                # the first frame of the current scene (a cut starts one)

    @property
    def steps_per_frame(self) -> float:
        """Propagator steps per frame after the first (the first is the prompt itself): 1.0."""
        n = len(self.coverage_sphere)
        return round(self.counter.steps / (n - 1), 4) if n > 1 else 0.0

    def run(self, frames) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(t, frame, idmap)``: the final id map of every frame, in order (each
        ``refine.backfill_s`` after it was followed)."""
        prev_rgb = None
        for t, frame, idm, motion in follow(frames, 0, self.first, self.counter, self.prompts,
                                             chunk=self.config.propagate.sam2_chunk_frames, every=self.step,
                                             motions=True):
            if t > 0 and motion is None and self.estimate is not None:
                motion = self.estimate(prev_rgb, frame)
            self._record_camera(t, motion)
            if motion is not None and motion.ok:
                rotate_state(self.state, motion.rotation)
                self._since_check = motion.rotation @ self._since_check
            if t > 0 and motion is not None and motion.reason == "cut":
                idm = self._cut(t, frame)
            elif t > 0 and self._after_gap(t, frame, motion):
                idm = self._cut(t, frame)
            elif t > 0 and t % self.step == 0:
                n_events, before = len(self.events), idm
                idm = self._check(t, frame, idm, motion)
                if len(self.events) > n_events:
                    self._backfill(t, frame, before, idm, motion, self.events[-1])
            if t == 0 or (motion is not None and motion.ok):
                self._textured = frame     # the last frame known to carry texture (for _after_gap)
            if t % self.step == self.step - 1 or self.step == 1:
                self._before = _Before(idm, frame)
            prev_rgb = frame
            self._held.append(_Held(t, frame, idm, motion.rotation if motion is not None and motion.ok else None))
            while len(self._held) > self.hold:
                yield self._release()
        while self._held:
            yield self._release()

    def _appeared_since(self, mask: np.ndarray, lab: np.ndarray, rot: np.ndarray | None) -> bool:
        """Whether the object under ``mask`` was not there on the oldest held frame: at least
        ``backfill_change_share`` of its pixels, moved back there by the camera rotations since,
        show a colour more than ``backfill_change_lab`` (CIELAB) away. A piece of a still scene
        looks the same through a turning camera; an object that appeared does not."""
        h, w = mask.shape
        R = np.eye(3) if rot is None else np.asarray(rot, np.float64)
        for held in list(self._held)[:0:-1]:          # newest to the second oldest
            if held.rotation is not None:
                R = R @ held.rotation                 # oldest -> t, composed
        ys, xs = np.nonzero(mask)
        sy, sx = ys, xs
        if not np.allclose(R, np.eye(3), atol=1e-7):
            lon, lat = lonlat_axes(h, w)
            plon, plat = vec_to_lonlat(lonlat_to_vec(lon[xs], lat[ys]) @ R)
            sx = np.rint(x_of_lon(plon, w)).astype(np.intp) % w
            sy = np.clip(np.rint(y_of_lat(plat, h)).astype(np.intp), 0, h - 1)
        old = to_lab(self._held[0].frame)[sy, sx].astype(np.float32)
        diff = np.linalg.norm(lab[ys, xs].astype(np.float32) - old, axis=1)
        return float(np.mean(diff > self._backfill_change)) >= self._backfill_change_share

    def _release(self) -> tuple[int, np.ndarray, np.ndarray]:
        h = self._held.popleft()
        self.coverage_pixel.append(round(coverage(h.idmap, "pixel"), 5))
        self.coverage_sphere.append(round(coverage(h.idmap, "sphere"), 5))
        return h.t, h.frame, h.idmap

    def _backfill(self, t: int, frame: np.ndarray, before: np.ndarray, idm: np.ndarray, motion,
                  event: dict) -> None:
        """Carry the thing tracks the refresh at ``t`` created, and those it grew by at least
        ``backfill_grow_share`` of their mask taken from the background (stuff or unlabeled in
        ``before``, the map the refresh corrected: a track born from part of an object and made
        whole later, synthetic handheld seed 3 bird born at 27 from ~730 of its 1463 px, whole at
        the keyframe of 30), back over the held frames. A grown track's own pixels on a held
        frame are sure foreground for GrabCut and count in its extent there.

        On each held frame, newest first, the track takes the unlabeled pixels where its mask on
        the next frame was, moved back by the camera rotation between the two and widened by
        ``backfill_margin`` (the object's own motion), and of the pixels a stuff region holds
        there those GrabCut (:func:`_grabcut`) gives the foreground: the flow propagator
        leaves what no label's motion explains unlabeled, but a small object is first seen in
        one or two frames under its size threshold and the background's label is then carried
        over it as it grows (synthetic handheld seed 3 bird over the sky, seed 1 auto kite over
        the grass: not one pixel unlabeled). Other things' pixels are never taken. It stops at
        the first frame with fewer such pixels than a track needs to be present or than
        ``backfill_min_share`` of its mask on the next frame.

        Only a track that appeared within the held frames is carried back (:meth:`_appeared_since`):
        a refresh also names pieces of a still scene the propagator followed as part of the
        background all along (real re-shot andes panorama, vehicle path: two 'unknown' pieces
        of the prompted wall at the keyframe, carried back over it: wall J 0.959 -> 0.947).
        For a grown track the test is on the pixels it gained.
        Records ``event["backfilled"]`` ``{track: frames}`` and moves the track's ``born`` back."""
        if not self._held or event.get("mode") == "cut":
            return
        top = max(max(self.tracks, default=0), int(before.max(initial=0)), int(idm.max(initial=0)),
                  max(int(held.idmap.max(initial=0)) for held in self._held))
        isstuff = self._stuff_lut(top)
        created = set(event.get("new", []) + event.get("created", []))
        gained: dict[int, np.ndarray] = {}
        if self._backfill_grow < 1.0:
            backdrop = (before == 0) | isstuff[before]
            area = np.bincount(idm.ravel(), minlength=top + 1)
            gain = np.bincount(idm[backdrop], minlength=top + 1)
            for k in np.flatnonzero((gain >= self._backfill_grow * area) & (area > 0) & ~isstuff).tolist():
                if k not in created:
                    gained[k] = backdrop & (idm == k)
        new = sorted(k for k in created | set(gained) if k in self.tracks and self.tracks[k].isthing)
        if not new:
            return
        h, w = idm.shape
        lon, lat = lonlat_axes(h, w)
        filled: dict[str, int] = {}
        lab = to_lab(frame) if self._backfill_change > 0 else None
        for k in new:
            mask = idm == k
            rot = motion.rotation if motion is not None and motion.ok else None
            if lab is not None and not self._appeared_since(gained.get(k, mask), lab, rot):
                continue
            frames = 0
            for held in reversed(self._held):
                ys, xs = np.nonzero(mask)
                if ys.size == 0 or held.t < self._scene_from:   # nothing is carried across a cut
                    break
                if rot is not None and not np.allclose(rot, np.eye(3), atol=1e-7):
                    # content at v on the held frame is at rot @ v on the next: back is rot.T @ v
                    plon, plat = vec_to_lonlat(lonlat_to_vec(lon[xs], lat[ys]) @ rot)
                    xs = np.rint(x_of_lon(plon, w)).astype(np.intp) % w
                    ys = np.clip(np.rint(y_of_lat(plat, h)).astype(np.intp), 0, h - 1)
                back = np.zeros((h, w), np.uint8)
                back[ys, xs] = 1
                if self._backfill_margin > 0:
                    back = _dilate_wrap(back, self._backfill_margin)
                take = (back > 0) & (held.idmap == 0)
                own = (back > 0) & (held.idmap == k)     # a grown track there: its pixels are sure
                if self._grabcut_iters:
                    under = (back > 0) & isstuff[held.idmap]
                    if under.any():
                        take |= under & _grabcut(held.frame, back > 0, take | own, under, self._grabcut_ring,
                                                 self._grabcut_iters, self._grabcut_side)
                extent = take | own
                if cv2.countNonZero(extent.view(np.uint8)) < max(self._absent_px, self._backfill_share * ys.size) \
                        or not take.any():
                    break
                held.idmap = held.idmap.copy()   # the propagator or MCR may hold the array
                held.idmap[take] = k
                mask, rot = extent, held.rotation
                frames += 1
                self.tracks[k].born = min(self.tracks[k].born, held.t)
            if frames:
                filled[str(k)] = frames
        if filled:
            event["backfilled"] = filled

    @property
    def coverage_series(self) -> list[float]:
        return self.coverage_sphere if self.rc.coverage == "sphere" else self.coverage_pixel

    def _record_camera(self, t: int, motion) -> None:
        if t == 0 or motion is None:
            rec = {"frame": t, "ok": t == 0, "reason": None if t == 0 else "not_estimated"}
            if t > 0:
                rec["orientation_ypr_deg"] = self.camera[-1]["orientation_ypr_deg"]
            else:
                rec["orientation_ypr_deg"] = [0.0, 0.0, 0.0]
            self.camera.append(rec)
            return
        rec = {"frame": t, **motion.as_dict(), "ypr_deg": _camera_ypr_deg(motion.rotation)}
        if motion.ok:
            self._orientation = motion.rotation @ self._orientation
        # an unreliable step counts as no motion: the error stays bounded by that one step
        rec["orientation_ypr_deg"] = _camera_ypr_deg(self._orientation)
        self.camera.append(rec)

    def _after_gap(self, t: int, frame: np.ndarray, motion) -> bool:
        """A new scene after frames without texture (a fade through black or grey): nothing can be
        measured against the grey frames, so the frame is compared with the last textured one;
        a cut there is a cut here. Records it in the frame's camera entry."""
        if motion is None or motion.ok or motion.reason != "uniform":
            self._gap = False
            return False
        if not self._gap:                  # the first grey frame: it is the grey one
            self._gap = True
            return False
        if self._textured is None or self.estimate is None:
            return False
        across = self.estimate(self._textured, frame)
        if across.reason == "uniform":     # still grey
            return False
        self._gap = False
        if across.reason != "cut":
            return False
        self.camera[-1]["cut"] = True
        self.camera[-1]["across_gap"] = across.as_dict()
        return True

    def _cut(self, t: int, frame: np.ndarray) -> np.ndarray:
        """A new scene: fresh SDR, every object a new track, nothing carried across."""
        self._scene_from = t
        fresh = self.annotate(frame)
        nxt = max(self.tracks, default=0) + 1
        lut = np.zeros(int(fresh.idmap.max(initial=0)) + 1, np.uint16)
        new = []
        for oid in sorted(fresh.objects):
            if oid >= lut.size or not (fresh.idmap == oid).any():
                continue
            obj = fresh.objects[oid]
            self.tracks[nxt] = Track(obj["category"], bool(obj["isthing"]),
                                     dict(obj.get("provenance", {}), found_at_frame=t, via="cut"),
                                     born=t, origin="refine")
            lut[oid] = nxt
            new.append(nxt)
            nxt += 1
        idm = lut[fresh.idmap]
        p = self.prompts.at(t, idm.shape[1]) if self.prompts is not None else None
        if p is not None:
            idm = prompts_mod.apply(idm, p)
        self.counter.reset(frame, idm)
        self._after_check(idm)
        self.state = RelinkState()           # no re-identification across a cut
        self._before = None
        self.last_areas = track_areas(idm, sphere=True)
        cov = coverage(idm, self.rc.coverage)
        self.events.append({"frame": t, "trigger": ["cut"], "mode": "cut", "new": new,
                            "coverage_after": round(cov, 4)})
        return idm

    def _check(self, t: int, frame: np.ndarray, idm: np.ndarray, motion) -> np.ndarray:
        rc = self.rc
        self.checks += 1
        cov = coverage(idm, rc.coverage)
        areas = track_areas(idm, sphere=True)
        reasons = []
        if cov < self.rho:
            reasons.append("coverage")
        dropped = [k for k, a in self.last_areas.items()
                   if a >= self.min_area and areas.get(k, 0) < (1 - rc.area_drop) * a]
        if dropped:
            reasons.append("area_drop")
        # a young refresh-found object losing its pixels one by one to the background: no single
        # check sees half of it go, so without this it waited for the next keyframe
        decayed = [k for k, ref in self._ref_areas.items()
                   if ref >= self.min_area and k not in dropped and self._young(k, t)
                   and areas.get(k, 0) < (1 - self._decay) * ref] if self._decay < 1 else []
        if decayed:
            reasons.append("area_decay")
        if self.key_every and t % self.key_every == 0:
            reasons.append("keyframe")
        appeared = self._appeared_area(idm) if self.appear_min > 0 else 0.0
        if appeared >= self.appear_min > 0:
            reasons.append("appeared")
        if self.contacts is not None:
            self.contacts.observe(idm, self.tracks)
        lab = to_lab(frame)
        # a coverage drop goes to MCR as before, also when the appearance trigger fired with it
        # (MCR's new branch proposes the blank regions); an appearance alone re-links a fresh SDR
        if "coverage" in reasons and set(reasons) <= {"coverage", "appeared"} and rc.mcr:
            before = self._before_moved(motion)
            prev_idm = before.idmap if before is not None else None
            prev_rgb = before.rgb if before is not None else None
            ask = self.question(prev_rgb, prev_idm, frame) if self.question is not None and before else None
            idm, event = route_and_fill(idm, prev_idm, lab, to_lab(prev_rgb) if prev_rgb is not None else None,
                                        self.tracks, frame=t, annotate=self.annotate, rgb=frame,
                                        min_area=self.min_area, ask=ask, tuning=self.config.propagate.tuning.mcr)
            event.update(trigger=reasons, mode="mcr", coverage_before=round(cov, 4),
                         coverage_after=round(coverage(idm, rc.coverage), 4))
            self.events.append(event)
            self.counter.reset(frame, idm)
            areas = track_areas(idm, sphere=True)
        elif reasons:
            fresh = self.annotate(frame)
            may_merge = self.contacts.may_merge if self.contacts is not None else None
            rt = self.config.propagate.tuning.relink
            idm, event = relink(idm, fresh, self.tracks, frame=t, reid_iou=rc.reid_iou, lab=lab, state=self.state,
                                max_lost_frames=int(round(rt.reid_max_lost_s * self.fps)),
                                hidden=self.counter.hidden_objects(idm.shape), min_new_area=self.min_area,
                                keep_unmatched=rc.keep_unmatched_tracks, may_merge=may_merge, tuning=rt)
            p = self.prompts.at(t, idm.shape[1]) if self.prompts is not None else None
            if p is not None:
                idm = prompts_mod.apply(idm, p)
            event.update(trigger=reasons, mode="re-sdr", coverage_before=round(cov, 4),
                         coverage_after=round(coverage(idm, rc.coverage), 4), dropped_tracks=dropped)
            if "appeared" in reasons:
                event["appeared_area"] = int(appeared)
            regrow = [k for k in decayed if k in event.get("kept", [])]
            if regrow and self._grabcut_iters:
                idm = self._regrow(frame, idm, regrow, event)
            self.events.append(event)
            self.counter.reset(frame, idm)
            self.counter.forget(t_piece for t_piece, _, _ in event.get("merged", []))
            areas = track_areas(idm, sphere=True)
        remember(self.state, idm, lab, t, self.tracks)
        if reasons:              # a refresh sets what a young track's decay is measured from
            self._ref_areas = dict(areas)
        else:
            for k, a in areas.items():
                self._ref_areas[k] = max(self._ref_areas.get(k, 0.0), a)
        if decayed:
            self.events[-1]["decayed_tracks"] = decayed
        self.last_areas = areas
        self._after_check(idm)
        return idm

    def _regrow(self, frame: np.ndarray, idm: np.ndarray, ks: list[int], event: dict) -> np.ndarray:
        """Give back to each decayed young track the fresh SDR did not find (relink kept its
        followed mask) the background pixels around it GrabCut (:func:`_grabcut`) gives it: its
        mask sure foreground, the stuff or unlabeled pixels within ``decay_regrow_px_at_1024``
        of it probable foreground. The SDR misses a small object against a busy background
        (synthetic handheld seed 3 bird at 42, inside the sky's fresh region), so the refresh
        alone would keep the eroded mask. Not taken when it would leave the track larger than
        ``decay_regrow_max_growth`` times its area at the last refresh (the band's background
        mistaken for the object).
        Records ``event["regrown"]`` ``{track: pixels}``."""
        isstuff = self._stuff_lut(int(idm.max(initial=0)))
        rw = row_solid_angles(*idm.shape)
        rw = rw / rw.max()
        out = idm
        for k in ks:
            mask = out == k
            if not mask.any():
                continue
            band = _dilate_wrap(mask.view(np.uint8), self._regrow_px) > 0
            unsure = band & ~mask & ((out == 0) | isstuff[out])
            if not unsure.any():
                continue
            fg = _grabcut(frame, band, mask, unsure, self._grabcut_ring, self._grabcut_iters, self._grabcut_side)
            if not fg.any():
                continue
            ys = np.nonzero(mask | fg)[0]
            if float(rw[ys].sum()) > self._regrow_cap * self._ref_areas.get(k, 0.0):
                continue
            out = out.copy() if out is idm else out
            out[fg] = k
            event.setdefault("regrown", {})[str(k)] = int(np.count_nonzero(fg))
        return out

    def _stuff_lut(self, top: int) -> np.ndarray:
        """Indexed by track id (any id up to ``top`` and every known track): whether it is stuff."""
        isstuff = np.zeros(max(top, max(self.tracks, default=0)) + 1, bool)
        for tid, tr in self.tracks.items():
            isstuff[tid] = not tr.isthing
        return isstuff

    def _young(self, k: int, t: int) -> bool:
        """A thing track a refresh found (not a prompt, not frame 0) at most ``decay_young_s`` ago."""
        tr = self.tracks.get(k)
        return tr is not None and tr.isthing and tr.active and tr.origin == "refine" and t - tr.born <= self._decay_young

    def _after_check(self, idm: np.ndarray) -> None:
        """What the appearance trigger compares the next check with: this check's unlabeled pixels."""
        blank = idm == 0
        self._blank_ref = blank if blank.any() else None
        self._since_check = np.eye(3)

    def _appeared_area(self, idm: np.ndarray) -> float:
        """Solid angle (equator pixels) of the largest piece of pixels unlabeled now and labeled
        at the previous check, where the camera rotation since carried them: what the
        propagator found no label for (the flow propagator leaves something that appeared in
        front of labeled background unlabeled). Holes the previous check left open do not count
        again (they are moved by the rotation, widened by a margin), so a region no refresh can
        label costs one refresh, not one per check."""
        blank = idm == 0
        if cv2.countNonZero(blank.view(np.uint8)) < self.appear_min:   # a solid angle <= its pixels
            return 0.0
        if self._blank_ref is not None:
            ref = self._blank_ref.view(np.uint8)
            if self._appear_margin > 0:
                ref = _dilate_wrap(ref, self._appear_margin)
            ys, xs = np.nonzero(blank)
            sy, sx = ys, xs
            if not np.allclose(self._since_check, np.eye(3), atol=1e-7):
                # where each blank pixel was at the previous check: R.T @ v, only for the blank
                # pixels (a whole-frame remap cost ~40 ms a check at 1024 px)
                h, w = idm.shape
                lon, lat = lonlat_axes(h, w)
                plon, plat = vec_to_lonlat(lonlat_to_vec(lon[xs], lat[ys]) @ self._since_check)
                sx = np.rint(x_of_lon(plon, w)).astype(np.intp) % w
                sy = np.clip(np.rint(y_of_lat(plat, h)).astype(np.intp), 0, h - 1)
            old = ref[sy, sx] > 0
            blank[ys[old], xs[old]] = False
        comp, n = wrap_components(blank, raster_order=False)
        if n == 0:
            return 0.0
        ys, xs = np.nonzero(blank)
        rw = row_solid_angles(*idm.shape)
        return float(np.bincount(comp[ys, xs], weights=(rw / rw.max())[ys]).max())

    def _before_moved(self, motion) -> _Before | None:
        """The frame before this check, moved by the camera rotation between the two: MCR's "lies
        where a track was at t-1" must compare places in the scene, not pixel positions (under a
        10 deg/s pan at 30 fps the raw t-1 map is off by 6 px at 1024 px)."""
        b = self._before
        if b is None or motion is None or not motion.ok or motion.angle_deg < 1e-3:
            return b
        return _Before(_rotate_once(b.idmap, motion.rotation, "nearest"), _rotate_once(b.rgb, motion.rotation, "linear"))


def _grabcut(rgb: np.ndarray, region: np.ndarray, sure: np.ndarray, unsure: np.ndarray, ring: int,
             iters: int, max_side: int) -> np.ndarray:
    """The pixels of ``unsure`` (inside ``region``) that OpenCV's GrabCut gives the foreground:
    ``sure`` pixels are foreground, ``unsure`` ones probably foreground, everything else in a
    crop around ``region`` widened by ``ring`` background (its colours are what the object is
    told apart from, so a multi-coloured object against a textured background is decided by
    both colour mixtures, not by a mean colour). The crop is taken across the seam (its columns
    wrap) and scaled down to ``max_side`` pixels at most, so the cost stays bounded whatever
    the object's size (an 8-px-wide object near the pole spans hundreds of columns)."""
    h, w = region.shape
    rows = np.flatnonzero(region.any(axis=1))
    occupied = _dilate_wrap(region.any(axis=0)[None].astype(np.uint8), ring)[0] > 0
    occ = np.flatnonzero(occupied)
    gaps = np.diff(np.concatenate([occ, occ[:1] + w]))    # to the next occupied column, circularly
    j = int(np.argmax(gaps))
    if gaps[j] <= 1:
        cols = np.arange(w)
    else:   # start after the widest run of empty columns: the crop wraps across the seam
        cols = (int(occ[(j + 1) % occ.size]) + np.arange(w - int(gaps[j]) + 1)) % w
    y0, y1 = max(0, int(rows[0]) - ring), min(h, int(rows[-1]) + ring + 1)
    ix = np.ix_(np.arange(y0, y1), cols)
    gm = np.full((y1 - y0, cols.size), cv2.GC_BGD, np.uint8)   # other things' pixels stay background
    gm[unsure[ix]] = cv2.GC_PR_FGD
    gm[sure[ix]] = cv2.GC_FGD
    img = np.ascontiguousarray(rgb[ix])
    scale = min(1.0, max_side / max(gm.shape))
    small = gm
    if scale < 1.0:
        size = (max(1, int(round(gm.shape[1] * scale))), max(1, int(round(gm.shape[0] * scale))))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        small = cv2.resize(gm, size, interpolation=cv2.INTER_NEAREST)
    # each side's colour mixture (5 Gaussians) needs samples to be fitted
    if np.count_nonzero(small == cv2.GC_BGD) < 20 or np.count_nonzero(small != cv2.GC_BGD) < 20:
        return np.zeros((h, w), bool)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(img, small, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    fg = (small == cv2.GC_FGD) | (small == cv2.GC_PR_FGD)
    if scale < 1.0:
        fg = cv2.resize(fg.view(np.uint8), (gm.shape[1], gm.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    out = np.zeros((h, w), bool)
    out[ix] = fg
    return out & unsure


def _dilate_wrap(mask: np.ndarray, r: int) -> np.ndarray:
    """A uint8 mask dilated by ``r`` pixels, across the left/right border too."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(wrap_pad(mask, r), k)[:, r:r + mask.shape[1]]


def _rotate_once(image: np.ndarray, R: np.ndarray, interpolation: str) -> np.ndarray:
    """:func:`~tasks.geometry.rotation.rotate_erp` without its table cache: every frame's
    rotation is new, and cached 4 MB tables (1024 px) would grow with the video (up to the
    cache's 512 MB) instead of staying flat."""
    h, w = image.shape[:2]
    lon, lat = lonlat_axes(h, w)
    return apply_table(erp_table(*grid_directions(lon, lat, check_rotation(R)), h, w, interpolation), image)


def _camera_ypr_deg(R: np.ndarray) -> list[float]:
    """Yaw, pitch, roll (degrees) of the camera orientation whose content motion is ``R``.

    The camera turned by ``C = R.T = rotation_matrix(yaw, pitch, roll)`` (the convention of
    :mod:`tasks.geometry.rotation`): its first column is the viewing direction (yaw, pitch), and
    its third row is ``(sin pitch, cos pitch sin roll, cos pitch cos roll)``.
    """
    C = np.asarray(R, dtype=np.float64).T
    yaw = math.atan2(C[1, 0], C[0, 0])
    pitch = math.asin(max(-1.0, min(1.0, C[2, 0])))
    roll = math.atan2(C[2, 1], C[2, 2])
    return [round(math.degrees(a), 4) for a in (yaw, pitch, roll)]
