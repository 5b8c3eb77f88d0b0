"""DAVIS region (J) and boundary (F) measures, planar and spherical.

The planar numbers follow davisvideochallenge/davis2017-evaluation (``davis2017/metrics.py``)
exactly: J is the IoU with two empty masks scoring 1, and F is ``f_measure``: the 1-pixel
boundary map of ``_seg2bmap``, a disk of radius ``bound_pix = ceil(0.008 * diagonal)`` as the
match tolerance, and the same precision/recall edge cases. :func:`seg2bmap` and
:func:`f_measure` are a literal dense port, kept as the reference for the fast path.

The evaluator uses an equivalent *point* form instead: a dilated boundary map evaluated at the
other mask's boundary pixels says nothing but "is there a boundary pixel of the other mask within
the disk", which a k-d tree over the boundary pixels answers in time proportional to the
boundary length instead of the frame area. Boundary pixels of every label of an id map are found
in one pass over the frame (:func:`label_boundaries`), so an object costs nothing until it is
matched.

Spherical variants (our extension for 360° frames):

* ``J_sphere``: IoU with every pixel weighted by its solid angle (the row weight).
* ``F_sphere``: the boundary map is ``_seg2bmap`` with the left and right borders joined (a
  mask crossing the seam has no boundary there, and one touching only one border does);
  boundary pixels are weighted by solid angle in precision and recall; a boundary pixel is
  matched when a boundary pixel of the other mask lies within the *angle* that the planar
  tolerance subtends at the equator (``bound_pix * pi / H``). The test is done exactly, as a
  great-circle distance between pixel centres (chord distance in a k-d tree over unit vectors),
  which wraps across the seam and over the poles by construction. In ERP pixels this tolerance
  is, to first order, an ellipse with the planar vertical radius and a horizontal radius of
  ``bound_pix / cos(latitude)``; near the poles, where that ellipse would have to be capped at
  ``W / 2``, the exact distance is used rather than a capped ellipse, so this is not an
  approximation but the angular definition itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import cKDTree

from tasks.geometry.erp import lonlat_axes, row_solid_angles

BOUND_TH = 0.008

# a squared integer distance r^2 + 1 lies at least 1 / (2r + 1) beyond r, far above this slack
_EPS = 1e-6


# -- reference (dense) port ---------------------------------------------------------------------
def bound_pixels(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """DAVIS match tolerance in pixels: ``bound_th`` itself if >= 1, else a diagonal fraction."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """``skimage.morphology.disk(radius)`` (strict radius): offsets with ``dx^2 + dy^2 <= r^2``."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy <= r * r).astype(np.uint8)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """DAVIS ``_seg2bmap`` at full size: boundaries offset half a pixel towards the origin.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour;
    the last row only looks east, the last column only south, and the last pixel never counts,
    so the image border itself is no boundary.
    """
    seg = np.asarray(seg).astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def precision_recall_f(n_fg: float, n_gt: float, fg_matched: float, gt_matched: float) -> float:
    """The DAVIS combination, including its edge cases (both boundaries empty -> 1, one -> 0)."""
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = fg_matched / n_fg
        recall = gt_matched / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def f_measure(foreground_mask: np.ndarray, gt_mask: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """DAVIS boundary F of one frame, computed densely (dilation of full-size boundary maps)."""
    fg = np.asarray(foreground_mask, dtype=bool)
    gt = np.asarray(gt_mask, dtype=bool)
    if fg.shape != gt.shape or fg.ndim != 2:
        raise ValueError(f"masks must be 2-D of one shape, got {fg.shape} and {gt.shape}")
    r = bound_pixels(*fg.shape, bound_th)
    fg_b = seg2bmap(fg)
    gt_b = seg2bmap(gt)
    kernel = disk(r)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    return precision_recall_f(
        int(fg_b.sum()), int(gt_b.sum()), int((fg_b & gt_dil).sum()), int((gt_b & fg_dil).sum())
    )


def iou(a: np.ndarray, b: np.ndarray, row_weights: np.ndarray | None = None) -> float:
    """J of one frame; with ``row_weights`` every pixel counts its row's weight (solid angle)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    inter = (a & b).sum(axis=1)
    union = (a | b).sum(axis=1)
    if row_weights is not None:
        i, u = float(inter @ row_weights), float(union @ row_weights)
    else:
        i, u = float(inter.sum()), float(union.sum())
    return 1.0 if u == 0 else i / u


# -- boundaries of every label at once ----------------------------------------------------------
def _split_by_label(keys: np.ndarray, hw: int) -> dict[int, np.ndarray]:
    keys = np.unique(keys)
    labels = keys // hw
    idx = (keys % hw).astype(np.int64)
    uniq, starts = np.unique(labels, return_index=True)
    ends = np.append(starts[1:], labels.size)
    return {int(lab): idx[s:e] for lab, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist())}


def _pair_keys(flat: np.ndarray, pos: np.ndarray, other: np.ndarray, hw: int) -> list[np.ndarray]:
    """A differing neighbour pair makes ``pos`` a boundary pixel of both labels involved."""
    a = flat[pos].astype(np.int64)
    b = flat[other].astype(np.int64)
    return [a[a > 0] * hw + pos[a > 0], b[b > 0] * hw + pos[b > 0]]


def label_boundaries(labels: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """DAVIS boundary pixels of every non-zero label of an id map, planar and seam-wrapped.

    Returns two dicts ``label -> sorted flat pixel indices``: the first equals
    ``seg2bmap(labels == k)`` for every ``k``; the second is the same map with the east and
    south-east neighbours of the last column taken from the first column (the seam joined).
    A pixel lies on the boundary of mask ``k`` when it and a neighbour differ in membership,
    i.e. when their labels differ and one of them is ``k`` -- so one comparison of the label
    map per direction gives the boundaries of all labels together.
    """
    lab = np.ascontiguousarray(labels)
    h, w = lab.shape
    hw = h * w
    flat = lab.ravel()
    keys: list[np.ndarray] = []
    # east (x < W-1), south (y < H-1), south-east (both): the seg2bmap neighbourhoods
    for d, step in (
        (lab[:, :-1] != lab[:, 1:], 1),
        (lab[:-1, :] != lab[1:, :], w),
        (lab[:-1, :-1] != lab[1:, 1:], w + 1),
    ):
        ys, xs = np.nonzero(d)
        pos = ys.astype(np.int64) * w + xs
        keys += _pair_keys(flat, pos, pos + step, hw)
    planar_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    # the seam: column W-1 against column 0 of the same row (east) and of the next row (south-east)
    seam: list[np.ndarray] = []
    last, first = lab[:, w - 1], lab[:, 0]
    ys = np.flatnonzero(last != first).astype(np.int64)
    seam += _pair_keys(flat, ys * w + (w - 1), ys * w, hw)
    ys = np.flatnonzero(last[:-1] != first[1:]).astype(np.int64)
    seam += _pair_keys(flat, ys * w + (w - 1), (ys + 1) * w, hw)
    wrapped_keys = np.concatenate([planar_keys, *seam])
    return _split_by_label(planar_keys, hw), _split_by_label(wrapped_keys, hw)


# -- point-form F -------------------------------------------------------------------------------
_EMPTY = np.zeros(0, np.int64)


@dataclass
class BoundaryScorer:
    """Boundary F of one video geometry, planar and spherical, from boundary pixel indices.

    Holds what every frame shares: the tolerance (pixels and its angle), the trigonometric
    tables of the pixel centres and the row solid angles.
    """

    height: int
    width: int
    bound_th: float = BOUND_TH
    radius: int = field(init=False)
    angle: float = field(init=False)
    _chord: float = field(init=False, repr=False)
    _row_w: np.ndarray = field(init=False, repr=False)
    _coslat: np.ndarray = field(init=False, repr=False)
    _sinlat: np.ndarray = field(init=False, repr=False)
    _coslon: np.ndarray = field(init=False, repr=False)
    _sinlon: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.radius = bound_pixels(self.height, self.width, self.bound_th)
        # one pixel spans pi / H of latitude, and 2 pi / W = pi / H of longitude at the equator
        self.angle = float(min(self.radius * np.pi / self.height, np.pi))
        self._chord = 2.0 * np.sin(self.angle / 2.0) * (1.0 + 1e-9)
        self._row_w = np.asarray(row_solid_angles(self.height, self.width), dtype=np.float64)
        lon, lat = lonlat_axes(self.height, self.width)
        self._coslat, self._sinlat = np.cos(lat), np.sin(lat)
        self._coslon, self._sinlon = np.cos(lon), np.sin(lon)

    # planar: exactly davis2017 f_measure (disk of radius `radius`)
    def planar(self, fg: np.ndarray | None, gt: np.ndarray | None) -> float:
        fg = _EMPTY if fg is None else fg
        gt = _EMPTY if gt is None else gt
        if fg.size == 0 or gt.size == 0:
            return precision_recall_f(fg.size, gt.size, 0, 0)
        pf = np.stack(np.divmod(fg, self.width), axis=1).astype(np.float64)
        pg = np.stack(np.divmod(gt, self.width), axis=1).astype(np.float64)
        lim = self.radius + _EPS
        fg_hit = _within(pg, pf, lim)
        gt_hit = _within(pf, pg, lim)
        return precision_recall_f(fg.size, gt.size, int(fg_hit.sum()), int(gt_hit.sum()))

    # spherical: seam-wrapped boundaries, solid-angle weights, great-circle tolerance
    def sphere(self, fg: np.ndarray | None, gt: np.ndarray | None) -> float:
        fg = _EMPTY if fg is None else fg
        gt = _EMPTY if gt is None else gt
        if fg.size == 0 or gt.size == 0:
            return precision_recall_f(fg.size, gt.size, 0, 0)
        yf, xf = np.divmod(fg, self.width)
        yg, xg = np.divmod(gt, self.width)
        vf = self._vectors(yf, xf)
        vg = self._vectors(yg, xg)
        fg_hit = _within(vg, vf, self._chord)
        gt_hit = _within(vf, vg, self._chord)
        return precision_recall_f(
            self._weight(yf), self._weight(yg), self._weight(yf[fg_hit]), self._weight(yg[gt_hit])
        )

    def _vectors(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        c = self._coslat[ys]
        return np.stack([c * self._coslon[xs], c * self._sinlon[xs], self._sinlat[ys]], axis=1)

    def _weight(self, ys: np.ndarray) -> float:
        # per-row counts first: the sum then does not depend on the order of the pixels, so a
        # yaw roll (which only reorders them) gives bit-identical results
        return float(np.bincount(ys, minlength=self.height) @ self._row_w)


def _within(reference: np.ndarray, query: np.ndarray, limit: float) -> np.ndarray:
    """For each query point: is some reference point within ``limit`` (Euclidean)?"""
    dist, _ = cKDTree(reference).query(query, k=1, distance_upper_bound=limit)
    return dist <= limit
