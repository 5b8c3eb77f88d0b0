"""Perspective (pinhole) views of an ERP frame, and the way back.

A view is a camera at the centre of the sphere with orientation
``rotation_matrix(lon, lat, roll)`` (:mod:`tasks.geometry.rotation`): it looks at ``(lon, lat)``,
its right is towards increasing longitude and its up towards north (for ``roll = 0``).

Units: ``lon``, ``lat`` and ``roll`` in **radians** (as everywhere in :mod:`tasks.geometry`);
the field of view ``fov_deg`` in **degrees** (as in configs and BFoVs). ``fov_deg`` is the
*horizontal* field of view measured edge to edge of the image; the vertical one follows from the
aspect ratio with square pixels: ``tan(vfov/2) = tan(fov/2) * height / width``.

Pixel grid: like the ERP convention, pixel ``(i, j)`` of a ``width`` x ``height`` view is the
cell centred at ``(j + 0.5, i + 0.5)``; the image plane at unit distance spans
``[-tan(fov/2), tan(fov/2)]`` across the full width, so the outermost pixel centres sit half a
pixel inside the field of view. (py360convert's ``e2p`` puts the outermost pixel *centres* on
the field-of-view edge; ``tan(fov_py/2) = tan(fov/2) * (width - 1) / width`` gives the same grid.)

The way back (:func:`perspective_to_erp`) computes, for every ERP pixel, its direction in the
camera frame and projects it: pixels behind the camera or outside the image are not covered and
read zero; the coverage mask says which are. With nearest sampling, a mask sent to a view and back
is the original inside the covered area, up to one pixel along its outline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tasks.geometry.erp import check_erp, check_erp_shape, lonlat_axes, lonlat_to_vec, vec_to_lonlat
from tasks.geometry.remap import (
    InvalidGeometry,
    RemapTable,
    apply_table,
    cached_table,
    default_interpolation,
    erp_table,
    float_key,
    grid_directions,
    planar_table,
)
from tasks.geometry.rotation import rotation_matrix

_OUTSIDE = -2.0  # a position this far outside a planar source reads zero even with bilinear


def _check_fov(fov_deg: float) -> float:
    fov = float(fov_deg)
    if not (math.isfinite(fov) and 0.0 < fov < 180.0):
        raise InvalidGeometry(f"a perspective field of view must be in (0, 180) degrees exclusive, got {fov_deg}")
    return fov


def _check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise InvalidGeometry(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def view_directions(R: np.ndarray, tan_h: float, tan_v: float, width: int, height: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World directions (not normalised) of every pixel centre of a view, as three float32
    (height, width) arrays: ``R @ (1, u, -v)`` with ``u`` right and ``v`` down on the image plane."""
    u = ((np.arange(width) + 0.5) * (2.0 / width) - 1.0) * tan_h
    v = ((np.arange(height) + 0.5) * (2.0 / height) - 1.0) * tan_v
    u = u.astype(np.float32)[None, :]
    v = v.astype(np.float32)[:, None]
    R = R.astype(np.float32)
    return tuple(R[k, 0] + u * R[k, 1] - v * R[k, 2] for k in range(3))  # type: ignore[return-value]


@dataclass(frozen=True)
class PerspectiveView:
    """A pinhole view: centre ``(lon, lat)`` and ``roll`` in radians, horizontal field of view in
    degrees, size in pixels. Its remap tables are cached per ERP size, so sampling the same view
    of every frame of a video costs one ``cv2.remap`` per frame."""

    lon: float
    lat: float
    fov_deg: float
    width: int
    height: int
    roll: float = 0.0
    rotation: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("lon", "lat", "roll"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise InvalidGeometry(f"view {name} must be a finite angle in radians, got {v}")
            object.__setattr__(self, name, v)
        if abs(self.lat) > math.pi / 2 + 1e-12:
            raise InvalidGeometry(f"view latitude {self.lat} rad is beyond a pole (|lat| <= pi/2)")
        object.__setattr__(self, "lat", max(-math.pi / 2, min(math.pi / 2, self.lat)))
        object.__setattr__(self, "fov_deg", _check_fov(self.fov_deg))
        object.__setattr__(self, "width", _check_size("view width", self.width))
        object.__setattr__(self, "height", _check_size("view height", self.height))
        R = rotation_matrix(self.lon, self.lat, self.roll)
        R.setflags(write=False)
        object.__setattr__(self, "rotation", R)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def tan_h(self) -> float:
        return math.tan(math.radians(self.fov_deg) / 2)

    @property
    def tan_v(self) -> float:
        return self.tan_h * self.height / self.width

    @property
    def vfov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.tan_v))

    @property
    def half_diagonal(self) -> float:
        """Angle (radians) from the viewing direction to the image corners: every covered
        direction lies within it."""
        return math.atan(math.hypot(self.tan_h, self.tan_v))

    def _key(self) -> tuple:
        return float_key(self.lon, self.lat, self.fov_deg, self.roll) + (self.width, self.height)

    def pixel_to_lonlat(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Direction (radians) of continuous view positions (pixel centres at integers)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        u = ((x + 0.5) * (2.0 / self.width) - 1.0) * self.tan_h
        v = ((y + 0.5) * (2.0 / self.height) - 1.0) * self.tan_v
        cam = np.stack(np.broadcast_arrays(np.ones_like(u), u, -v), axis=-1)
        return vec_to_lonlat(cam @ self.rotation.T)

    def lonlat_to_pixel(self, lon: np.ndarray | float, lat: np.ndarray | float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Continuous view position (pixel centres at integers) of directions, and whether each
        is in front of the camera (behind it, the position is meaningless and set to NaN)."""
        c = lonlat_to_vec(lon, lat) @ self.rotation  # camera coordinates, R.T @ d per row
        front = c[..., 0] > 0
        cx = np.where(front, c[..., 0], 1.0)
        x = np.where(front, (c[..., 1] / cx / self.tan_h + 1.0) * self.width / 2 - 0.5, np.nan)
        y = np.where(front, (-c[..., 2] / cx / self.tan_v + 1.0) * self.height / 2 - 0.5, np.nan)
        return x, y, front

    # -- tables -----------------------------------------------------------------------------
    def sample_table(self, erp_height: int, erp_width: int, interpolation: str) -> RemapTable:
        check_erp_shape(erp_height, erp_width)

        def build() -> RemapTable:
            dirs = view_directions(self.rotation, self.tan_h, self.tan_v, self.width, self.height)
            return erp_table(*dirs, erp_height, erp_width, interpolation)

        return cached_table(("e2p", *self._key(), erp_height, erp_width, interpolation), build)

    def back_table(self, erp_width: int, interpolation: str) -> RemapTable:
        erp_height = erp_width // 2
        check_erp_shape(erp_height, erp_width, "ERP target")
        return cached_table(("p2e", *self._key(), erp_height, erp_width, interpolation),
                            lambda: self._build_back(erp_height, erp_width, interpolation))

    def _footprint(self, erp_height: int, erp_width: int) -> tuple[int, int, np.ndarray]:
        """Rows ``[r0, r1)`` and the columns that can hold covered pixels: the view lies inside
        the spherical cap of radius :attr:`half_diagonal` around its centre."""
        lon, lat = lonlat_axes(erp_height, erp_width)
        alpha = self.half_diagonal
        pad = math.pi / erp_height  # one pixel of margin for rounding
        rows = np.flatnonzero((lat >= self.lat - alpha - pad) & (lat <= self.lat + alpha + pad))
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        if abs(self.lat) + alpha + pad >= math.pi / 2:
            return r0, r1, np.arange(erp_width)
        half = math.asin(min(1.0, math.sin(alpha) / math.cos(self.lat))) + 2 * math.pi / erp_width
        if half >= math.pi:
            return r0, r1, np.arange(erp_width)
        dlon = np.mod(lon - self.lon + math.pi, 2 * math.pi) - math.pi
        cols = np.flatnonzero(np.abs(dlon) <= half)
        return r0, r1, cols

    def _build_back(self, erp_height: int, erp_width: int, interpolation: str) -> RemapTable:
        r0, r1, cols = self._footprint(erp_height, erp_width)
        if cols.size and cols[-1] - cols[0] + 1 != cols.size:
            cols = np.arange(erp_width)  # the footprint wraps across the seam: use full rows
        c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
        lon, lat = lonlat_axes(erp_height, erp_width)
        # camera coordinates c = R.T @ d: forward, right, up
        cx, cy, cz = grid_directions(lon[c0:c1], lat[r0:r1], self.rotation)
        th, tv = np.float32(self.tan_h), np.float32(self.tan_v)
        covered = cx > 0
        covered &= np.abs(cy) <= th * cx
        covered &= np.abs(cz) <= tv * cx
        inv = np.divide(np.float32(1), cx, out=np.zeros_like(cx), where=covered)
        x, y = cy, cz  # reused in place
        x *= inv
        x *= np.float32(self.width / 2) / th
        x += np.float32(self.width / 2 - 0.5)
        y *= inv
        y *= np.float32(-self.height / 2) / tv
        y += np.float32(self.height / 2 - 0.5)
        # the outermost half pixel replicates the edge instead of blending with the zero border
        np.clip(x, 0, self.width - 1, out=x)
        np.clip(y, 0, self.height - 1, out=y)
        x[~covered] = _OUTSIDE
        y[~covered] = _OUTSIDE
        coverage = np.zeros((erp_height, erp_width), dtype=bool)
        coverage[r0:r1, c0:c1] = covered
        if not covered.any():
            x = y = np.zeros((0, 0), np.float32)
        return planar_table(x, y, (self.height, self.width), interpolation, out_shape=(erp_height, erp_width),
                            region=(r0, r1, c0, c1), coverage=coverage)

    # -- resampling -------------------------------------------------------------------------
    def sample(self, erp: np.ndarray, interpolation: str | None = None) -> np.ndarray:
        """The view of an ERP frame: (height, width) plus the frame's channels, same dtype."""
        h, w = check_erp(erp)
        return apply_table(self.sample_table(h, w, default_interpolation(erp, interpolation)), erp)

    def back(self, view: np.ndarray, erp_width: int, interpolation: str | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """``(erp, coverage)``: the view projected onto an ERP frame of ``erp_width`` x
        ``erp_width / 2`` (zero outside the view), and the bool mask of covered ERP pixels."""
        view = np.asarray(view)
        if view.ndim < 2 or tuple(view.shape[:2]) != (self.height, self.width):
            raise InvalidGeometry(f"view of shape {view.shape[:2]} does not match the view size "
                                  f"{(self.height, self.width)}")
        table = self.back_table(int(erp_width), default_interpolation(view, interpolation))
        return apply_table(table, view), table.coverage.copy()

    def back_mask(self, mask: np.ndarray, erp_width: int) -> np.ndarray:
        """A bool view mask on the ERP frame (nearest; False outside the view)."""
        out, _ = self.back(np.asarray(mask, dtype=bool), erp_width, "nearest")
        return out

    def coverage(self, erp_width: int) -> np.ndarray:
        """Bool ERP mask of the pixels whose centre the view sees."""
        return self.back_table(int(erp_width), "nearest").coverage.copy()


def erp_to_perspective(erp: np.ndarray, *, lon: float, lat: float, fov_deg: float, width: int, height: int,
                       interpolation: str | None = None, roll: float = 0.0) -> np.ndarray:
    """A perspective view of ``erp`` looking at ``(lon, lat)`` (radians), horizontal field of view
    ``fov_deg`` (degrees), ``width`` x ``height`` pixels. Nearest for masks and label maps, bilinear
    for images unless ``interpolation`` says otherwise."""
    return PerspectiveView(lon, lat, fov_deg, width, height, roll).sample(erp, interpolation)


def perspective_to_erp(view: np.ndarray, *, lon: float, lat: float, fov_deg: float, erp_width: int,
                       interpolation: str | None = None, roll: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(erp, coverage)``: a view (taken with these parameters; its size is its shape) projected
    onto an ERP frame ``erp_width`` wide, and the bool mask of ERP pixels it covers."""
    view = np.asarray(view)
    if view.ndim < 2:
        raise InvalidGeometry(f"a view must have 2 or more dimensions, got shape {view.shape}")
    pv = PerspectiveView(lon, lat, fov_deg, view.shape[1], view.shape[0], roll)
    return pv.back(view, erp_width, interpolation)


def perspective_mask_to_erp(mask: np.ndarray, *, lon: float, lat: float, fov_deg: float, erp_width: int,
                            roll: float = 0.0) -> np.ndarray:
    """A bool mask drawn on a perspective view, as a bool ERP mask (nearest; False where the view
    does not reach)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InvalidGeometry(f"a view mask must be 2-D, got shape {mask.shape}")
    return PerspectiveView(lon, lat, fov_deg, mask.shape[1], mask.shape[0], roll).back_mask(mask, erp_width)
