"""Overlap statistics between two label maps, by bincount over aligned pixels.

Every IoU/coverage computation between segmentations (tile merge, vote, id re-linking, QA)
goes through here, so it is one pass over the pixels whatever the number of masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairStats:
    a: np.ndarray        # label in the first map
    b: np.ndarray        # label in the second map
    inter: np.ndarray    # pixels (or weight) shared
    area_a: np.ndarray   # area of every label of the first map (indexed by label)
    area_b: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        return self.inter / (self.area_a[self.a] + self.area_b[self.b] - self.inter)

    @property
    def cover_a(self) -> np.ndarray:
        """Share of the first label's area covered by the second."""
        return self.inter / self.area_a[self.a]

    @property
    def cover_b(self) -> np.ndarray:
        return self.inter / self.area_b[self.b]


def pair_stats(la: np.ndarray, lb: np.ndarray, weights: np.ndarray | None = None) -> PairStats:
    """Statistics of all co-occurring (non-zero, non-zero) label pairs.

    ``weights`` (same shape, or one weight per row) turns pixel counts into weighted areas,
    e.g. solid angles for spherical IoU.
    """
    if la.shape != lb.shape:
        raise ValueError(f"label maps differ in shape: {la.shape} vs {lb.shape}")
    a = la.ravel().astype(np.int64)
    b = lb.ravel().astype(np.int64)
    w = None
    if weights is not None:
        w = np.broadcast_to(weights.reshape(-1, 1) if weights.ndim == 1 else weights, la.shape).ravel()
    na, nb = int(a.max(initial=0)) + 1, int(b.max(initial=0)) + 1
    area_a = np.bincount(a, weights=w, minlength=na).astype(np.float64)
    area_b = np.bincount(b, weights=w, minlength=nb).astype(np.float64)
    both = (a > 0) & (b > 0)
    key = a[both] * nb + b[both]
    if w is None:
        uk, inter = np.unique(key, return_counts=True)
        inter = inter.astype(np.float64)
    else:
        uk, inv = np.unique(key, return_inverse=True)
        inter = np.bincount(inv, weights=w[both])
    return PairStats(uk // nb, uk % nb, inter, area_a, area_b)
