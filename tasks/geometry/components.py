"""Seam-aware mask analysis: connected components, bounding boxes and BFoV on ERP frames.

A region that leaves the right border and re-enters on the left is *one* region here; a box
around it wraps instead of spanning the full width.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tasks.geometry.erp import lonlat_axes, lonlat_to_vec, row_solid_angles, vec_to_lonlat


def wrap_components(mask: np.ndarray, connectivity: int = 8, *, raster_order: bool = True) -> tuple[np.ndarray, int]:
    """Label connected components of a boolean ERP mask with the left/right border joined.

    Returns ``(labels, n)`` like :func:`cv2.connectedComponents`: ``labels`` int32 with 0 for
    background and 1..n for components, numbered in raster order of their first pixel; with
    ``raster_order=False`` in no particular order, which saves a sort of the whole mask (callers
    that only need the pieces' sizes, per object and per frame).
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    h, w = mask.shape
    n, labels = cv2.connectedComponents(mask, connectivity=connectivity)
    if n <= 2 or w < 2:
        return labels.astype(np.int32), n - 1
    left, right = labels[:, 0], labels[:, w - 1]
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    offsets = (-1, 0, 1) if connectivity == 8 else (0,)
    for dy in offsets:
        lo, hi = max(0, -dy), min(h, h - dy)
        a = right[lo:hi]
        b = left[lo + dy:hi + dy]
        both = (a > 0) & (b > 0)
        for la, lb in set(zip(a[both].tolist(), b[both].tolist())):
            ra, rb = find(la), find(lb)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    if not raster_order:
        uniq = np.unique(roots[1:])
        lut = np.zeros(n, dtype=np.int32)
        lut[1:] = np.searchsorted(uniq, roots[1:]) + 1
        return lut[labels], int(uniq.size)
    # renumber in raster order of first appearance
    uniq, first = np.unique(labels.ravel(), return_index=True)
    order = {}
    for lab in uniq[np.argsort(first)]:
        r = roots[lab]
        if r == 0:
            continue
        if r not in order:
            order[r] = len(order) + 1
    lut = np.zeros(n, dtype=np.int32)
    for lab in range(1, n):
        lut[lab] = order[roots[lab]]
    return lut[labels], len(order)


def wrap_column_span(columns_occupied: np.ndarray) -> tuple[int, int]:
    """Smallest circular span covering every occupied column: ``(x0, width)``, x0 in [0, W)."""
    occ = np.asarray(columns_occupied, dtype=bool)
    w = occ.size
    if not occ.any():
        return 0, 0
    if occ.all():
        return 0, w
    # the largest circular run of empty columns is the gap the box should not cover
    empty = ~occ
    doubled = np.concatenate([empty, empty]).astype(np.int8)
    # run lengths of empties in the doubled array
    d = np.diff(np.concatenate([[0], doubled, [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    lengths = np.minimum(ends - starts, w)
    k = int(np.argmax(lengths))
    gap_start, gap_len = int(starts[k]), int(lengths[k])
    x0 = (gap_start + gap_len) % w
    return x0, w - gap_len


def wrap_bbox(mask: np.ndarray) -> list[int] | None:
    """Seam-aware ``[x, y, w, h]``: ``x`` in [0, W); ``x + w`` may exceed W (the box wraps)."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    x0, bw = wrap_column_span(mask.any(axis=0))
    return [int(x0), int(rows[0]), int(bw), int(rows[-1] - rows[0] + 1)]


def planar_bbox(mask: np.ndarray) -> list[int] | None:
    """The COCO box ``[x, y, w, h]`` (no wrap: a seam-crossing object spans the full width)."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


@dataclass(frozen=True)
class BFoV:
    """Bounding field of view (360VOT): centre and angular extent, in degrees."""

    clon: float
    clat: float
    fov_h: float
    fov_v: float

    def as_list(self) -> list[float]:
        return [round(self.clon, 4), round(self.clat, 4), round(self.fov_h, 4), round(self.fov_v, 4)]


_MAX_POINTS = 50_000


def _row_band(mask: np.ndarray, margin: int = 0) -> tuple[int, int] | None:
    """Rows ``[r0, r1)`` holding the mask's pixels, widened by ``margin`` rows where the image
    has them; None for an empty mask. Per-mask work on the band instead of the whole frame is
    what keeps per-object, per-frame geometry cheap (a 20-row object in a 512-row frame)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    return max(0, int(rows[0]) - margin), min(mask.shape[0], int(rows[-1]) + 1 + margin)


def spherical_centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """Solid-angle weighted mean direction of a mask, as (lon, lat) radians; None if empty or
    if the mask is balanced around the centre of the sphere (no meaningful centre)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    band = _row_band(mask)
    if band is None:
        return None
    r0, r1 = band
    lon, lat = lonlat_axes(h, w)
    lat = lat[r0:r1]
    m = mask[r0:r1].astype(np.float64)
    # sum over pixels of w_row * (cos lat cos lon, cos lat sin lon, sin lat), as matrix products
    per_row = m @ np.stack([np.cos(lon), np.sin(lon)], axis=1)  # (rows, 2)
    counts = m.sum(axis=1)
    wr = row_solid_angles(h, w)[r0:r1]
    total = float(counts @ wr)
    if total == 0:
        return None
    v = np.array([
        (wr * np.cos(lat)) @ per_row[:, 0],
        (wr * np.cos(lat)) @ per_row[:, 1],
        (wr * np.sin(lat)) @ counts,
    ])
    if np.linalg.norm(v) < 1e-9 * total:
        return None
    clon, clat = vec_to_lonlat(v)
    return float(clon), float(clat)


def bfov(mask: np.ndarray) -> BFoV | None:
    """BFoV of a mask: the sphere is rotated so the mask's spherical centroid sits at (0, 0),
    and the extent is the lon/lat range of the mask there. Invariant under yaw roll."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    c = spherical_centroid(mask)
    if c is None:
        return None if not mask.any() else BFoV(0.0, 0.0, 360.0, 180.0)
    # the extremes of the rotated lon/lat lie on the outline; fall back to all pixels for a
    # mask without one (the whole sphere)
    # the outline on the mask's rows plus one (the rows around are empty, as in the full frame)
    r0, r1 = _row_band(mask, margin=1)
    band = mask[r0:r1]
    outline = boundary(band, wrap=True)
    ys, xs = np.nonzero(outline if outline.any() else band)
    ys = ys + r0
    if ys.size > _MAX_POINTS:
        step = int(np.ceil(ys.size / _MAX_POINTS))
        ys, xs = ys[::step], xs[::step]
    clon, clat = c
    lon, lat = lonlat_axes(h, w)
    v = lonlat_to_vec(lon[xs], lat[ys])
    # rotate: yaw by -clon about z, then pitch by +clat about y, so the centre goes to (1, 0, 0)
    cz, sz = np.cos(-clon), np.sin(-clon)
    x1 = cz * v[:, 0] - sz * v[:, 1]
    y1 = sz * v[:, 0] + cz * v[:, 1]
    z1 = v[:, 2]
    cy, sy = np.cos(clat), np.sin(clat)
    x2 = cy * x1 + sy * z1
    z2 = -sy * x1 + cy * z1
    rlon, rlat = vec_to_lonlat(np.stack([x2, y1, z2], axis=-1))
    # half a pixel on each side: a one-pixel mask still has a size
    half_px_lon = np.pi / w
    half_px_lat = np.pi / (2 * h)
    fov_h = float(np.degrees(rlon.max() - rlon.min() + 2 * half_px_lon))
    fov_v = float(np.degrees(rlat.max() - rlat.min() + 2 * half_px_lat))
    return BFoV(float(np.degrees(clon)), float(np.degrees(clat)), min(fov_h, 360.0), min(fov_v, 180.0))


def boundary(mask: np.ndarray, wrap: bool = True) -> np.ndarray:
    """One-pixel inner boundary of a boolean mask; with ``wrap`` the seam is not a border."""
    mask = np.asarray(mask, dtype=bool)
    m = mask.astype(np.uint8)
    if wrap:
        padded = np.concatenate([m[:, -1:], m, m[:, :1]], axis=1)
        eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)[:, 1:-1]
    else:
        eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~eroded.astype(bool)
