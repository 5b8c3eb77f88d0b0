"""Merging a track into the object it was a piece of, on every frame it was followed [ours].

The segmentor sometimes cuts one object in two on the frame a track starts (a textured ball
became two tracks on frame 0 of the demo clip, two thirds and one third); both pieces are then
followed faithfully until a later SDR sees the object whole, and re-linking keeps the id of the
larger piece. Labels are made offline, so the smaller piece's id can be replaced by the
object's on the frames before too, and the release holds one object with one id.

Two tracks are merged only if they touched on every check where both were visible: two objects
that were ever apart are two objects, whatever a later frame's segmentation says.
"""

from __future__ import annotations

import numpy as np

from tasks.labeling.tracks import Track


def touching_pairs(idmap: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of ids that are 4-neighbours somewhere (the seam wraps)."""
    a = np.concatenate([idmap[:, :-1].ravel(), idmap[:-1, :].ravel(), idmap[:, -1]])
    b = np.concatenate([idmap[:, 1:].ravel(), idmap[1:, :].ravel(), idmap[:, 0]])
    keep = (a != b) & (a > 0) & (b > 0)
    lo = np.minimum(a[keep], b[keep]).astype(np.int64)
    hi = np.maximum(a[keep], b[keep]).astype(np.int64)
    key = np.unique(lo * 65536 + hi)
    return {(int(k // 65536), int(k % 65536)) for k in key}


class Contacts:
    """Which tracks were ever seen apart (both visible, not touching) on a check.

    Stuff tracks are watched too: a piece of a thing the voters called stuff is merged into the
    thing only if the two always touched (relink, issue 10)."""

    def __init__(self) -> None:
        self.apart: set[tuple[int, int]] = set()

    def observe(self, idmap: np.ndarray, tracks: dict[int, Track]) -> None:
        ids = sorted(t for t in np.unique(idmap).tolist() if t and t in tracks)
        if len(ids) < 2:
            return
        touching = touching_pairs(idmap)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                if (a, b) not in touching:
                    self.apart.add((a, b))

    def may_merge(self, a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) not in self.apart


def merge_lut(tracks: dict[int, Track]) -> np.ndarray | None:
    """Id lookup table sending every merged track to the track it finally became (chains followed)."""
    merged = {t: tr.merged_into for t, tr in tracks.items() if tr.merged_into is not None}
    if not merged:
        return None
    lut = np.arange(max(tracks) + 1, dtype=np.uint16)
    for t in merged:
        u, seen = t, {t}
        while tracks[u].merged_into is not None:
            u = tracks[u].merged_into
            if u in seen:
                raise ValueError(f"track {t} is merged into itself through {sorted(seen)}")
            seen.add(u)
        lut[t] = u
    return lut
