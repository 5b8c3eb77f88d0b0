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


def track_areas(idmap: np.ndarray) -> dict[int, int]:
    counts = np.bincount(idmap.ravel())
    ids = np.flatnonzero(counts)
    return {int(i): int(counts[i]) for i in ids if i > 0}
