"""Agreement between two labelings of one video, on the sphere (issue 10 §1).

Used where a video has no human ground truth but a *known transformation*: a still panorama
re-shot through a known camera path (the frame-0 labels rotated by each frame's rotation are
what frame t should show: **rotation consistency**), or a video labeled as-is and again after a
rotation (labels of the rotated video against the rotated labels: **equivariance**). Both are
"reference id maps vs predicted id maps, track ids unrelated", so one accumulator serves both.

Matching is per track over the whole clip, not per frame (a per-frame match would forgive an id
switch): the Hungarian assignment maximises the summed per-frame spherical IoU of each
(reference, prediction) pair. A reference track's score is its matched prediction's mean
spherical IoU over the frames where either is present (0 when unmatched); the clip's score is
the mean of those weighted by each reference track's mean solid angle (a one-pixel fleck does
not weigh like the sky). Label 0 (unlabeled) is no track.

:func:`track_scores` measures prompted objects whose ids are known (no matching): DAVIS J and
F, planar and on the sphere (:mod:`tasks.metrics.davis`), per object over the frames where
the object or its prediction is present.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from scipy.optimize import linear_sum_assignment

from tasks.geometry.erp import row_solid_angles
from tasks.metrics.davis import BoundaryScorer, label_boundaries


def _frame_table(ref: np.ndarray, pred: np.ndarray, row_w: np.ndarray):
    """Solid angle of every (ref id, pred id) pixel pair of one frame, and of every id."""
    if ref.shape != pred.shape or ref.ndim != 2:
        raise ValueError(f"id maps must be 2-D of one shape, got {ref.shape} and {pred.shape}")
    h, w = ref.shape
    weights = np.broadcast_to(row_w[:, None], (h, w)).ravel()
    r = ref.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    both = (r > 0) & (p > 0)
    k = r[both] * 65536 + p[both]
    keys, inv = np.unique(k, return_inverse=True)
    inter = np.bincount(inv, weights=weights[both], minlength=keys.size)
    ra = np.bincount(r, weights=weights)
    pa = np.bincount(p, weights=weights)
    return keys // 65536, keys % 65536, inter, ra, pa


class Agreement:
    """Accumulates reference/prediction id-map pairs frame by frame; :meth:`result` matches
    tracks over the whole clip and scores them (see the module docstring)."""

    def __init__(self) -> None:
        self.frames = 0
        self._iou: dict[tuple[int, int], float] = defaultdict(float)
        self._inter: dict[tuple[int, int], float] = defaultdict(float)
        self._both: dict[tuple[int, int], int] = defaultdict(int)
        self._ref_area: dict[int, float] = defaultdict(float)
        self._ref_frames: dict[int, int] = defaultdict(int)
        self._pred_frames: dict[int, int] = defaultdict(int)
        self._pred_area: dict[int, float] = defaultdict(float)

    def add(self, ref: np.ndarray, pred: np.ndarray) -> None:
        h, w = ref.shape
        rid, pid, inter, ra, pa = _frame_table(ref, pred, np.asarray(row_solid_angles(h, w), np.float64))
        ref_ids = [int(i) for i in np.flatnonzero(ra) if i > 0]
        pred_ids = [int(i) for i in np.flatnonzero(pa) if i > 0]
        for i in ref_ids:
            self._ref_area[i] += float(ra[i])
            self._ref_frames[i] += 1
        for j in pred_ids:
            self._pred_area[j] += float(pa[j])
            self._pred_frames[j] += 1
        for i, j, x in zip(rid.tolist(), pid.tolist(), inter.tolist()):
            self._iou[(i, j)] += x / (ra[i] + pa[j] - x)
            self._inter[(i, j)] += x
        # frames where both are present count once in the union of their frames, overlapping or not
        for i in ref_ids:
            for j in pred_ids:
                self._both[(i, j)] += 1
        self.frames += 1

    def result(self) -> dict:
        refs = sorted(self._ref_area)
        preds = sorted(self._pred_area)
        per_track = []
        matched: dict[int, int] = {}
        if refs and preds:
            score = np.zeros((len(refs), len(preds)))
            ri = {t: k for k, t in enumerate(refs)}
            pj = {t: k for k, t in enumerate(preds)}
            for (i, j), s in self._iou.items():
                score[ri[i], pj[j]] = s
            rows, cols = linear_sum_assignment(-score)
            matched = {refs[r]: preds[c] for r, c in zip(rows, cols) if score[r, c] > 0}
        for i in refs:
            j = matched.get(i)
            if j is None:
                iou = 0.0
            else:
                span = self._ref_frames[i] + self._pred_frames[j] - self._both[(i, j)]
                iou = self._iou[(i, j)] / span
            per_track.append({"ref": i, "pred": j, "iou": iou,
                              "area_sr": self._ref_area[i] / self._ref_frames[i]})
        w = np.array([t["area_sr"] for t in per_track])
        s = np.array([t["iou"] for t in per_track])
        return {
            "frames": self.frames,
            "iou_weighted": float((w * s).sum() / w.sum()) if w.size else 1.0,
            "iou_mean": float(s.mean()) if s.size else 1.0,
            "ref_tracks": len(refs), "pred_tracks": len(preds), "matched": len(matched),
            "per_track": per_track,
        }

    def covering(self, ref_id: int, share: float = 0.1) -> list[int]:
        """Predicted tracks that hold more than ``share`` of reference track ``ref_id``'s solid
        angle over the clip: one means the object was followed as one track; more means it was
        split (or merged with its neighbours' ids)."""
        total = self._ref_area.get(ref_id, 0.0)
        if total <= 0:
            return []
        return sorted(j for (i, j), x in self._inter.items() if i == ref_id and x > share * total)


def agreement(ref_maps: Iterable[np.ndarray], pred_maps: Iterable[np.ndarray]) -> dict:
    """:class:`Agreement` over two equally long sequences of id maps."""
    acc = Agreement()
    for ref, pred in zip(ref_maps, pred_maps, strict=True):
        acc.add(ref, pred)
    return acc.result()


def track_scores(gt_maps: Iterable[np.ndarray], pred_maps: Iterable[np.ndarray], ids: Iterable[int]) -> dict[int, dict]:
    """DAVIS J and F of objects whose prediction carries the ground truth's id (prompted
    objects), planar and spherical, averaged over the frames where the object or its prediction
    is present. Returns ``id -> {"J_planar", "J_sphere", "F_planar", "F_sphere", "frames"}``."""
    ids = [int(i) for i in ids]
    sums = {i: np.zeros(4) for i in ids}
    counts = dict.fromkeys(ids, 0)
    scorer = None
    for gt, pred in zip(gt_maps, pred_maps, strict=True):
        if gt.shape != pred.shape:
            raise ValueError(f"id maps of different shapes: {gt.shape} and {pred.shape}")
        h, w = gt.shape
        if scorer is None:
            scorer = BoundaryScorer(h, w)
            row_w = np.asarray(row_solid_angles(h, w), np.float64)
        gp, gs = label_boundaries(gt)
        pp, ps = label_boundaries(pred)
        for i in ids:
            a, b = gt == i, pred == i
            if not (a.any() or b.any()):
                continue
            inter, union = (a & b).sum(1), (a | b).sum(1)
            j_planar = float(inter.sum() / union.sum())
            j_sphere = float((inter @ row_w) / (union @ row_w))
            f_planar = scorer.planar(pp.get(i), gp.get(i))
            f_sphere = scorer.sphere(ps.get(i), gs.get(i))
            sums[i] += (j_planar, j_sphere, f_planar, f_sphere)
            counts[i] += 1
    out = {}
    for i in ids:
        n = counts[i]
        m = sums[i] / n if n else np.ones(4)
        out[i] = {"J_planar": float(m[0]), "J_sphere": float(m[1]), "F_planar": float(m[2]),
                  "F_sphere": float(m[3]), "frames": n}
    return out
