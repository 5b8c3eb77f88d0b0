"""Motion-Continuity Refinement with geometric routing [M §1.3, §6 row 6].

When coverage drops, the paper asks GPT where each blank (unlabeled) region belongs; the
released code never calls that checker. Here the routing is geometry first:

* **border** — the region touches the left/right border: the frame is rolled by half its width
  so the seam sits in the middle of the tiles, segmented, rolled back; each entity that
  continues into a track on the other side of the seam joins that track (same id on both sides);
* **existing** — the region lies where a track was at t-1: its pixels that still look like that
  track (CIELAB distance to its colour at t-1) go back to it; what the object uncovered is left
  to the next branch. Under a moving camera the caller passes the t-1 map (and colours) moved
  by the camera rotation, so "where" is a place in the scene, not a pixel position
  (:class:`tasks.labeling.follow.TrackingPass`, issue 10);
* **new** — everything else goes through the SDR: stuff joins its class, things of a minimal
  size become new tracks.

A region that fits two branches (touches the seam *and* lies on a track at t-1, or lies on two
tracks) is *ambiguous*. Only then, and only when a VLM verifier is configured, the paper's
"object retriever" question is asked (is this the object seen at t-1?): yes -> existing branch,
no -> border or new. Otherwise, or when the model cannot answer, the geometry decides (the seam
first, then the largest overlap). Every ambiguous region is counted in the refine events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.config import McrTuning
from tasks.geometry.components import wrap_components
from tasks.labeling.sdr import FrameObjects
from tasks.labeling.tracks import Track

# The thresholds that change labels are fields of McrTuning (propagate.tuning.mcr in
# tasks/config.py), with their defaults and why (issue 12 point 10).


@dataclass
class Region:
    mask: np.ndarray
    route: str
    ambiguous: bool
    prev_track: int | None


def blank_regions(idmap: np.ndarray, prev: np.ndarray | None, min_area: int,
                  things: set[int] | None = None, existing_share: float = McrTuning().existing_share) -> list[Region]:
    """Blank regions and their route. Only objects (``things``; all ids when None) count for the
    existing branch: background under a blank region is for the SDR to name again."""
    comp, n = wrap_components(idmap == 0)
    if n == 0:
        return []
    areas = np.bincount(comp.ravel(), minlength=n + 1)
    w = idmap.shape[1]
    out = []
    for c in range(1, n + 1):
        if areas[c] < min_area:
            continue
        m = comp == c
        seam = bool(m[:, 0].any() or m[:, w - 1].any())
        prev_track, shares = None, []
        if prev is not None:
            ids, counts = np.unique(prev[m], return_counts=True)
            keep = (ids > 0) if things is None else np.isin(ids, np.array(sorted(things), dtype=ids.dtype))
            ids, counts = ids[keep], counts[keep]
            shares = sorted((counts / areas[c]).tolist(), reverse=True)
            if ids.size and counts.max() >= existing_share * areas[c]:
                prev_track = int(ids[np.argmax(counts)])
        two_tracks = len(shares) > 1 and shares[1] >= existing_share
        route = "border" if seam else ("existing" if prev_track is not None else "new")
        out.append(Region(m, route, (seam and prev_track is not None) or two_tracks, prev_track))
    return out


def route_and_fill(
    idmap: np.ndarray,
    prev: np.ndarray | None,
    frame_lab: np.ndarray,
    prev_lab: np.ndarray | None,
    tracks: dict[int, Track],
    *,
    frame: int,
    annotate,           # callable(rgb) -> FrameObjects: the SDR
    rgb: np.ndarray,
    min_area: int,
    ask=None,           # optional callable(region mask, track id) -> bool | None: the VLM question
    tuning: McrTuning | None = None,
) -> tuple[np.ndarray, dict]:
    """Fill the blank regions of ``idmap`` by their branch. Updates ``tracks`` in place.
    ``tuning``: the thresholds (propagate.tuning.mcr; its defaults when None)."""
    tn = tuning if tuning is not None else McrTuning()
    out = idmap.copy()
    regions = blank_regions(idmap, prev, min_area, {tid for tid, tr in tracks.items() if tr.isthing},
                            tn.existing_share)
    event = {"frame": frame, "regions": len(regions), "routes": {"border": 0, "existing": 0, "new": 0},
             "ambiguous": 0, "asked": 0, "joined": [], "created": [], "filled_px": 0}
    if not regions:
        return out, event
    w = idmap.shape[1]
    fresh: FrameObjects | None = None
    rolled: FrameObjects | None = None
    stuff_track = {tr.category: tid for tid, tr in tracks.items() if not tr.isthing}
    for r in regions:
        if r.ambiguous and ask is not None and r.prev_track is not None:
            same = ask(r.mask, r.prev_track)
            if same is not None:
                event["asked"] += 1
                seam = bool(r.mask[:, 0].any() or r.mask[:, -1].any())
                r.route = "existing" if same else ("border" if seam else "new")
                if not same:
                    r.prev_track = None
        event["routes"][r.route] += 1
        event["ambiguous"] += int(r.ambiguous)
        todo = r.mask.copy()
        if r.route == "existing" and r.prev_track is not None and prev_lab is not None and prev is not None:
            was = prev == r.prev_track
            color = prev_lab[was].mean(axis=0) if was.any() else None
            if color is not None:
                same = todo & (np.linalg.norm(frame_lab - color, axis=2) <= tn.same_color)
                out[same] = r.prev_track
                todo &= ~same
                event["filled_px"] += int(same.sum())
        if r.route == "border":
            if rolled is None:
                half = w // 2
                r_objs = annotate(np.roll(rgb, half, axis=1))
                rolled = FrameObjects(np.roll(r_objs.idmap, -half, axis=1), r_objs.objects, r_objs.stats)
            todo = _assign_from(rolled, todo, out, idmap, tracks, stuff_track, frame, min_area, event, join=True,
                                join_share=tn.join_share)
        if todo.any():
            if fresh is None:
                fresh = annotate(rgb)
            _assign_from(fresh, todo, out, idmap, tracks, stuff_track, frame, min_area, event, join=False,
                         join_share=tn.join_share)
    return out, event


def _assign_from(objs: FrameObjects, todo: np.ndarray, out: np.ndarray, current: np.ndarray,
                 tracks: dict[int, Track], stuff_track: dict[str, int], frame: int, min_area: int,
                 event: dict, *, join: bool, join_share: float) -> np.ndarray:
    """Give the ``todo`` pixels the ids of the SDR objects covering them; returns what is left."""
    left = todo.copy()
    for oid in np.unique(objs.idmap[todo]).tolist():
        if oid == 0 or oid not in objs.objects:
            continue
        obj = objs.objects[oid]
        part = todo & (objs.idmap == oid)
        target = None
        if join:
            # the entity continues outside the blank region: onto which track?
            outside = (objs.idmap == oid) & ~todo & (current > 0)
            if outside.any():
                ids, counts = np.unique(current[outside], return_counts=True)
                best = int(ids[np.argmax(counts)])
                if counts.max() >= join_share * outside.sum() and best in tracks:
                    target = best
                    event["joined"].append(best)
        if target is None and not obj["isthing"]:
            target = stuff_track.get(obj["category"])
        if target is None:
            if not obj["isthing"] or part.sum() >= min_area:
                target = max(tracks, default=0) + 1
                tracks[target] = Track(obj["category"], bool(obj["isthing"]),
                                       dict(obj.get("provenance", {}), found_at_frame=frame, via="mcr"),
                                       born=frame, origin="refine")
                if not obj["isthing"]:
                    stuff_track[obj["category"]] = target
                event["created"].append(target)
            else:
                continue
        out[part] = target
        left &= ~part
        event["filled_px"] += int(part.sum())
    return left
