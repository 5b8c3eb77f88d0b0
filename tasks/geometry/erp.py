"""Equirectangular (ERP) pixel <-> sphere math.

Convention (used everywhere in this package):

* image of ``H`` rows and ``W = 2H`` columns; pixel ``(x, y)`` is the cell whose centre is at
  ``(x + 0.5, y + 0.5)``;
* longitude ``lon = (x + 0.5) / W * 2*pi - pi``, in ``(-pi, pi)``, increasing to the right;
  the seam (``lon = +-pi``) is the left/right image border;
* latitude ``lat = pi/2 - (y + 0.5) / H * pi``, in ``(-pi/2, pi/2)``, north pole at the top;
* unit vector ``(cos lat cos lon, cos lat sin lon, sin lat)``: x towards the image centre
  (lon 0, lat 0), y towards lon = +90 deg (a quarter of the width right of the centre), z up.

Solid angles are exact per cell: ``dlon * (sin(lat_top) - sin(lat_bottom))``; they sum to 4*pi.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tasks.errors import NotEquirectangular


def check_erp_shape(height: int, width: int, what: str = "frame") -> None:
    """Raise :class:`NotEquirectangular` unless ``width == 2 * height``."""
    if height <= 0 or width != 2 * height:
        raise NotEquirectangular(width, height, what)


def check_erp(image: np.ndarray, what: str = "frame") -> tuple[int, int]:
    if image.ndim < 2:
        raise NotEquirectangular(0, 0, what)
    h, w = image.shape[:2]
    check_erp_shape(h, w, what)
    return h, w


# -- coordinates ------------------------------------------------------------------------------
def lon_of_x(x: np.ndarray | float, width: int) -> np.ndarray | float:
    return (np.asarray(x, dtype=np.float64) + 0.5) / width * (2 * np.pi) - np.pi


def lat_of_y(y: np.ndarray | float, height: int) -> np.ndarray | float:
    return np.pi / 2 - (np.asarray(y, dtype=np.float64) + 0.5) / height * np.pi


def x_of_lon(lon: np.ndarray | float, width: int) -> np.ndarray | float:
    """Continuous pixel x (cell centres at integers) of a longitude, wrapped into [-0.5, W-0.5)."""
    x = (np.asarray(lon, dtype=np.float64) + np.pi) / (2 * np.pi) * width - 0.5
    return np.mod(x + 0.5, width) - 0.5


def y_of_lat(lat: np.ndarray | float, height: int) -> np.ndarray | float:
    return (np.pi / 2 - np.asarray(lat, dtype=np.float64)) / np.pi * height - 0.5


@lru_cache(maxsize=16)
def _lonlat(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    lon = lon_of_x(np.arange(width), width)
    lat = lat_of_y(np.arange(height), height)
    lon.setflags(write=False)
    lat.setflags(write=False)
    return lon, lat


def lonlat_axes(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes of the columns (W,) and latitudes of the rows (H,), read-only, cached."""
    return _lonlat(height, width)


def lonlat_to_vec(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lon, lat = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    c = np.cos(lat)
    return np.stack([c * np.cos(lon), c * np.sin(lon), np.sin(lat)], axis=-1)


def vec_to_lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1)
    n = np.where(n == 0, 1.0, n)
    x, y, z = v[..., 0] / n, v[..., 1] / n, v[..., 2] / n
    return np.arctan2(y, x), np.arcsin(np.clip(z, -1.0, 1.0))


@lru_cache(maxsize=8)
def _unit_vectors(height: int, width: int) -> np.ndarray:
    lon, lat = _lonlat(height, width)
    v = lonlat_to_vec(lon[None, :], lat[:, None]).astype(np.float32)
    v.setflags(write=False)
    return v


def unit_vectors(height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 unit vector of every pixel centre, read-only, cached."""
    return _unit_vectors(height, width)


# -- solid angles -----------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _row_weights(height: int, width: int) -> np.ndarray:
    edges = np.pi / 2 - np.arange(height + 1) / height * np.pi  # latitude of row edges
    w = (2 * np.pi / width) * (np.sin(edges[:-1]) - np.sin(edges[1:]))
    w.setflags(write=False)
    return w


def row_solid_angles(height: int, width: int) -> np.ndarray:
    """Solid angle (steradians) of one pixel in each row, shape (H,). Sums to 4*pi over the image."""
    return _row_weights(height, width)


def spherical_area(mask: np.ndarray) -> float:
    """Solid angle (sr) covered by a boolean ERP mask."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    return float(mask.sum(axis=1) @ row_solid_angles(h, w))


def spherical_fraction(mask: np.ndarray) -> float:
    """Fraction of the whole sphere covered by ``mask`` (in [0, 1])."""
    return spherical_area(mask) / (4 * np.pi)


def spherical_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union with every pixel weighted by its solid angle.

    Two empty masks have IoU 1 (they agree perfectly), as in the DAVIS convention.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    h, w = a.shape
    wr = row_solid_angles(h, w)
    inter = np.logical_and(a, b).sum(axis=1) @ wr
    union = np.logical_or(a, b).sum(axis=1) @ wr
    return 1.0 if union == 0 else float(inter / union)


def planar_iou(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


# -- yaw roll ---------------------------------------------------------------------------------
def roll(image: np.ndarray, shift: int) -> np.ndarray:
    """Exact yaw rotation by ``shift`` columns (positive moves content to the right)."""
    return np.roll(image, int(shift), axis=1)


def wrap_pad(image: np.ndarray, pad: int) -> np.ndarray:
    """Copy ``pad`` columns from each side to the other, so the seam is continuous inside."""
    if pad <= 0:
        return image
    w = image.shape[1]
    if pad > w:
        raise ValueError(f"wrap pad {pad} exceeds image width {w}")
    return np.concatenate([image[:, w - pad:], image, image[:, :pad]], axis=1)


def unwrap_pad(padded: np.ndarray, pad: int, reduce: str = "center") -> np.ndarray:
    """Inverse of :func:`wrap_pad` for per-pixel results.

    ``reduce="center"`` keeps the central copy; ``"or"`` ORs the duplicated strips back onto
    their source columns (for masks computed on the padded image).
    """
    if pad <= 0:
        return padded
    w = padded.shape[1] - 2 * pad
    center = padded[:, pad:pad + w]
    if reduce == "center":
        return center.copy()
    if reduce != "or":
        raise ValueError(f"unknown reduce {reduce!r}")
    out = center.astype(bool).copy()
    out[:, w - pad:] |= padded[:, :pad].astype(bool)
    out[:, :pad] |= padded[:, pad + w:].astype(bool)
    return out
