"""Coverage of a frame by labels: the method's pixel fraction, and the solid-angle fraction.

The method measures coverage in pixels [M §1.3], which over-weights the poles (a pole row has
as many pixels as the equator row and ~1000x less area at 2048 px). The sphere measure counts
what a viewer sees.
"""

from __future__ import annotations

import numpy as np

from tasks.geometry.erp import row_solid_angles


def coverage(idmap: np.ndarray, mode: str = "sphere") -> float:
    labeled = idmap > 0
    if mode == "pixel":
        return float(labeled.mean())
    if mode != "sphere":
        raise ValueError(f"unknown coverage mode {mode!r}")
    h, w = idmap.shape
    return float(labeled.sum(axis=1) @ row_solid_angles(h, w) / (4 * np.pi))


def drop_small_ids(idmap: np.ndarray, min_area: int) -> np.ndarray:
    """Clear (in place) every id covering fewer than ``min_area`` pixels: a track that small is
    absent, not a speck carried along. Returns the map."""
    if min_area <= 0:
        return idmap
    areas = np.bincount(idmap.ravel())
    small = np.flatnonzero((areas > 0) & (areas < min_area))
    small = small[small > 0]
    if small.size:
        idmap[np.isin(idmap, small)] = 0
    return idmap


def track_areas(idmap: np.ndarray, sphere: bool = False) -> dict[int, int]:
    """Pixels of every id. ``sphere``: solid angle instead, in units of an equator pixel, so an
    object the camera turns towards a pole does not "grow" (ERP stretches a row at latitude phi
    by 1/cos(phi): twice the pixels at 60 deg), nor "drop" on its way back (issue 10)."""
    if not sphere:
        counts = np.bincount(idmap.ravel())
    else:
        h, w = idmap.shape
        rw = row_solid_angles(h, w)
        weights = np.broadcast_to((rw / rw.max())[:, None], (h, w)).ravel()
        counts = np.rint(np.bincount(idmap.ravel(), weights=weights))
    ids = np.flatnonzero(counts)
    return {int(i): int(counts[i]) for i in ids if i > 0}
