"""Track-level bookkeeping: GT <-> prediction matching, ID switches, seam crossings and splits.

Everything here works on per-frame *overlap tables* rather than masks: ``inter[f, g, p]`` is the
number of pixels of frame ``f`` labeled ``g`` in the ground truth and ``p`` in the prediction
(index 0 = unlabeled). One ``bincount`` per frame builds such a table for all objects at once,
and every quantity below (areas, IoUs, coverage shares) follows from it without touching a mask.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

ID_THRESHOLD = 0.5  # a prediction "is" a GT object in a frame when it covers this much of it
SEAM_SHARE = 0.1  # a prediction counts as one of the object's ids when it covers this much


def overlap_table(gt: np.ndarray, pred: np.ndarray, n_gt: int, n_pred: int) -> np.ndarray:
    """Per-row overlap counts ``(H, n_gt + 1, n_pred + 1)`` of two compact label maps.

    Per row rather than per frame so that solid-angle weighting is one matrix product with the
    row weights, and a yaw roll (which permutes pixels within rows) changes nothing.
    """
    h, w = gt.shape
    k = (n_gt + 1) * (n_pred + 1)
    key = gt.astype(np.int64) * (n_pred + 1)
    key += pred
    key += (np.arange(h, dtype=np.int64) * k)[:, None]
    return np.bincount(key.ravel(), minlength=h * k).reshape(h, n_gt + 1, n_pred + 1)


def iou_tables(inter: np.ndarray) -> np.ndarray:
    """IoU of every (GT, prediction) pair per frame, 0 where both are empty.

    ``inter``: ``(F, G + 1, P + 1)`` overlap (pixel counts or solid angles). Returns
    ``(F, G, P)`` for the labeled indices 1.. only.
    """
    gt_area = inter.sum(axis=2)[:, 1:]
    pred_area = inter.sum(axis=1)[:, 1:]
    i = inter[:, 1:, 1:].astype(np.float64)
    union = gt_area[:, :, None] + pred_area[:, None, :] - i
    return np.divide(i, union, out=np.zeros_like(i), where=union > 0)


def match_tracks(iou_sum: np.ndarray) -> dict[int, int]:
    """Hungarian assignment maximising the summed per-frame IoU; ``{gt_index: pred_index}``.

    Indices are 0-based rows/columns of ``iou_sum``. A pair the assignment makes without any
    overlap in any frame is no match: the GT object is left unmatched (it scores 0 either way,
    and its prediction stays free to be reported as unmatched).
    """
    if iou_sum.size == 0:
        return {}
    rows, cols = linear_sum_assignment(iou_sum, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols) if iou_sum[r, c] > 0}


def assigned_ids(inter: np.ndarray, threshold: float = ID_THRESHOLD) -> np.ndarray:
    """CLEAR-MOT style identity of each GT object per frame: ``(F, G)`` prediction index or 0.

    The prediction with the largest overlap is the object's id in that frame if it covers at
    least ``threshold`` of the GT mask's pixels; otherwise (or if the object is absent) 0.
    """
    overlap = inter[:, 1:, 1:]
    gt_area = inter[:, 1:, :].sum(axis=2)
    if overlap.shape[2] == 0:
        return np.zeros(gt_area.shape, np.int64)
    best = overlap.argmax(axis=2)
    best_val = np.take_along_axis(overlap, best[:, :, None], axis=2)[:, :, 0]
    ok = (gt_area > 0) & (best_val >= threshold * gt_area)
    return np.where(ok, best + 1, 0)


def id_switches(ids: np.ndarray) -> int:
    """Changes of id between consecutive frames that have one (frames without are skipped)."""
    seq = ids[ids > 0]
    return int(np.count_nonzero(seq[1:] != seq[:-1]))


def seam_crossing_labels(labels: np.ndarray) -> np.ndarray:
    """Labels that continue across the seam in this frame (sorted, non-zero).

    A label crosses when a pixel of it in the last column touches one in the first column
    (same row or a diagonal neighbour, as 8-connectivity) -- exactly the case where the
    wrap-aware connected component holding both touches column 0 and column W-1 *because* it
    runs through the seam.
    """
    last, first = labels[:, -1], labels[:, 0]
    hits = [last[last == first]]
    hits.append(last[:-1][last[:-1] == first[1:]])
    hits.append(last[1:][last[1:] == first[:-1]])
    found = np.unique(np.concatenate(hits))
    return found[found > 0]


def split_ids(overlap_row: np.ndarray, share: float = SEAM_SHARE, others=()) -> int:
    """How many predictions each cover at least ``share`` of a GT object in one frame.

    ``overlap_row``: the object's row of an overlap table, index 0 = unlabeled prediction.
    ``others``: prediction indices matched to other GT objects; they are not ids of this object
    (a neighbour's track leaking over it is a J error of both, not a split of this one).
    """
    area = overlap_row.sum()
    if area == 0:
        return 0
    own = overlap_row[1:] >= share * area
    own[[p - 1 for p in others]] = False
    return int(np.count_nonzero(own))
