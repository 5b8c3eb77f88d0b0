"""Re-following objects from corrected frames, forward and backward, keeping every id (issue 15 §3).

A person corrected some frames (each one whole: every object, id and mask). The objects the
correction changed are followed from there with the pipeline's propagator
(:func:`tasks.labeling.follow.follow`, its public entry point) in both directions: forward on the
video as it is, backward on the video read in reverse (the propagator only sees consecutive
frames, so reversed time is just another video). A correction on frame 150 of tracks 7 and 12
thereby also fixes frames 143-149 where the same two tracks were swapped.

In each direction the re-follow stops

* at the next corrected frame (which is its own truth), or
* at the first frame where every changed track's re-followed mask agrees with the earlier run's
  mask of the same id (IoU >= ``review.refollow_agree_iou``; both empty counts as agreeing): the
  earlier labels were right from there on, and they were made with more context (refreshes,
  re-identification) than a single propagation has.

Only the changed tracks are taken from the re-follow; every other object keeps the earlier
run's mask, except where a changed object now covers it. Where a forward and a backward re-follow
both reach a frame, the one from the nearer correction wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from tasks.formats import idmap as idmap_png
from tasks.labeling.follow import follow


class ArrayFrames:
    """Frames held in memory (a list of RGB arrays), with the frame-source interface of
    :class:`tasks.video.framestore.Frames` that :func:`refollow` needs: for decoded clips in
    tests and benchmarks."""

    def __init__(self, frames: list[np.ndarray], fps: float = 0.0) -> None:
        self.frames = frames
        self.height, self.width = frames[0].shape[:2]
        self.fps = fps

    def __len__(self) -> int:
        return len(self.frames)

    def get(self, i: int) -> np.ndarray:
        return self.frames[i]

    def iter(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        yield from self.frames[start:stop]


class Reversed:
    """A frame source read backwards: index ``i`` is frame ``len - 1 - i`` of ``frames``."""

    def __init__(self, frames) -> None:
        self.frames = frames
        self.width = frames.width
        self.height = getattr(frames, "height", frames.width // 2)

    def __len__(self) -> int:
        return len(self.frames)

    def get(self, i: int) -> np.ndarray:
        return self.frames.get(len(self.frames) - 1 - i)

    def iter(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        n = len(self.frames)
        stop = n if stop is None else min(stop, n)
        for i in range(start, stop):
            yield self.frames.get(n - 1 - i)


def changed_tracks(corrected: np.ndarray, base: np.ndarray) -> set[int]:
    """Ids whose mask on this frame differs between the correction and the earlier run."""
    diff = corrected != base
    ids = np.union1d(np.unique(corrected[diff]), np.unique(base[diff]))
    return {int(i) for i in ids if i > 0}


def _iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else None


def carried_tracks(corrected: np.ndarray, base: np.ndarray, iou: float) -> set[int]:
    """The changed ids that are another object, or no object, in the earlier run: there on one
    side only, or IoU < ``iou``. Grass that lost the pixels of a missed object, or a boundary
    moved by a few pixels, is not carried (its earlier masks were right)."""
    out = set()
    for k in changed_tracks(corrected, base):
        v = _iou(corrected == k, base == k)
        if v is None or v < iou or not (corrected == k).any() or not (base == k).any():
            out.add(k)
    return out


def _agrees(prop: np.ndarray, base: np.ndarray, ids: set[int], iou: float) -> bool:
    """The earlier run has the same objects under the same ids here: no id disagrees (there on one
    side only, or IoU < ``iou``) and at least one is there on both sides and agrees. An id absent
    on both sides (hidden, or out of view) says nothing: an object the correction added keeps
    being followed through an occlusion, and a piece it removed stays removed."""
    seen = False
    for k in ids:
        a, b = prop == k, base == k
        has_a, has_b = bool(a.any()), bool(b.any())
        if not has_a and not has_b:
            continue
        if has_a != has_b or np.count_nonzero(a & b) / np.count_nonzero(a | b) < iou:
            return False
        seen = True
    return seen


def overlay(base: np.ndarray, prop: np.ndarray, ids: set[int]) -> np.ndarray:
    """``base`` with the ``ids`` taken from ``prop``: they are removed from ``base``, the holes
    they leave take ``prop``'s labels (a seam piece's pixels go to the object it belonged to),
    and ``prop``'s masks of them are pasted over whatever was there."""
    idl = np.fromiter(ids, np.int64, len(ids))
    out = base.copy()
    hole = np.isin(base, idl)
    out[hole] = prop[hole]
    take = np.isin(prop, idl)
    out[take] = prop[take]
    return out


@dataclass
class Refollowed:
    frames: dict[int, bytes] = field(default_factory=dict)   # frame -> PNG id map of the revised frame
    human: list[int] = field(default_factory=list)            # corrected frames (their labels are a person's)
    spans: list[dict] = field(default_factory=list)           # per correction and direction: frames re-followed
    steps: int = 0                                            # propagator steps


def refollow(frames, corrected: dict[int, np.ndarray], base_idmap: Callable[[int], np.ndarray], propagator, *,
             agree_iou: float) -> Refollowed:
    """The revised id maps of every frame that changes (PNG bytes; frames not listed keep the
    earlier run's map). ``frames``: a frame source (``width``, ``len``, ``iter(start)``, ``get``);
    ``base_idmap(f)``: the earlier run's id map of frame ``f``; ``propagator``: a fresh
    :func:`tasks.backends.flow.build_propagator` (reset at every corrected frame)."""
    n = len(frames)
    keys = sorted(corrected)
    out = Refollowed(human=list(keys))
    best: dict[int, tuple[int, bytes]] = {}            # frame -> (distance to its correction, map)
    for f in keys:
        best[f] = (0, idmap_png.encode_png(corrected[f]))
    rev = Reversed(frames)
    for i, f in enumerate(keys):
        ids = carried_tracks(corrected[f], base_idmap(f), agree_iou)
        if not ids:
            continue            # the frame was confirmed as it was: nothing to carry
        nxt = keys[i + 1] if i + 1 < len(keys) else n
        prv = keys[i - 1] if i > 0 else -1
        for direction, source, start, stop in (("forward", frames, f, nxt), ("backward", rev, n - 1 - f, n - 1 - prv)):
            last = f
            for j, (t, _frame, prop) in enumerate(follow(source, start, corrected[f], propagator)):
                if j == 0:
                    continue
                out.steps += 1
                if t >= stop:
                    break
                real = t if direction == "forward" else n - 1 - t
                base = base_idmap(real)
                if _agrees(prop, base, ids, agree_iou):
                    break
                dist = abs(real - f)
                last = real
                if real in best and best[real][0] <= dist:
                    continue            # a nearer correction decided this frame
                # a frame some other correction already revised keeps that one's other tracks
                under = base if real not in best else idmap_png.decode_png(best[real][1])
                new = overlay(under, prop, ids)
                if real in best or not np.array_equal(new, base):
                    best[real] = (dist, idmap_png.encode_png(new))
            out.spans.append({"from": f, "direction": direction, "tracks": sorted(ids),
                              "frames": [min(f, last), max(f, last)] if last != f else [f, f]})
    out.frames = {t: data for t, (_, data) in sorted(best.items())}
    return out
