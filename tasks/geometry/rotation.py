"""Rotations of the sphere, and rotating an ERP frame or mask by any of them.

Convention (radians; frame of :mod:`tasks.geometry.erp`: x to the image centre, y to lon +90 deg,
z up). ``rotation_matrix(yaw, pitch, roll)`` is the orientation of a camera that looks at
``(lon, lat) = (yaw, pitch)``::

    R = Rz(yaw) @ Ry(-pitch) @ Rx(roll)

* its first column ``R @ (1, 0, 0)`` is the viewing direction ``vec(yaw, pitch)``;
* its second column is the camera's *right* (towards increasing longitude when ``roll = 0``);
* its third column is the camera's *up* (towards the north pole when ``pitch = roll = 0``);
* positive ``roll`` turns the camera counter-clockwise about its viewing axis (right tilts up),
  so content in the view turns clockwise.

As an action on content, ``R`` carries the point at direction ``v`` to ``R @ v``:
:func:`rotate_erp` shows at direction ``d`` what the input showed at ``R.T @ d``.
``rotation_to(lon, lat)`` is the inverse of the camera orientation and brings ``(lon, lat)`` to the
image centre. A pure yaw by ``k * 2*pi / W`` is :func:`tasks.geometry.erp.roll` by ``k`` columns.
"""

from __future__ import annotations

import math

import numpy as np

from tasks.geometry.erp import check_erp, lonlat_axes, lonlat_to_vec, vec_to_lonlat
from tasks.geometry.remap import (
    InvalidGeometry,
    RemapTable,
    apply_table,
    cached_table,
    default_interpolation,
    erp_table,
    grid_directions,
)

_ORTHO_TOL = 1e-6


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InvalidGeometry(f"{name} must be a finite angle in radians, got {value}")
    return value


def rotation_matrix(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Orientation of a camera looking at ``(lon, lat) = (yaw, pitch)`` with ``roll`` about its
    viewing axis, all in radians (see the module docstring). Float64 (3, 3)."""
    yaw, pitch, roll = _finite("yaw", yaw), _finite("pitch", pitch), _finite("roll", roll)
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, -sp], [0.0, 1.0, 0.0], [sp, 0.0, cp]])  # Ry(-pitch): x tilts up to z
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx


def rotation_to(lon: float, lat: float) -> np.ndarray:
    """``R`` with ``R @ vec(lon, lat) == (1, 0, 0)``: rotating a frame by it brings the content
    at ``(lon, lat)`` to the image centre, keeping that point's north upwards (no roll)."""
    return rotation_matrix(lon, lat).T


def check_rotation(R: np.ndarray) -> np.ndarray:
    """Float64 copy of ``R`` after checking it is a proper rotation (orthonormal, det +1): a
    reflection or a scaled matrix would silently mirror or distort a mask."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.isfinite(R).all():
        raise InvalidGeometry(f"a rotation must be a finite 3x3 matrix, got shape {R.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=_ORTHO_TOL) or np.linalg.det(R) < 0:
        raise InvalidGeometry("matrix is not a rotation (it must be orthonormal with determinant +1)")
    return R.copy()


def rotate_lonlat(R: np.ndarray, lon: np.ndarray | float, lat: np.ndarray | float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Where points at ``(lon, lat)`` (radians) go when content is rotated by ``R``: the same
    motion :func:`rotate_erp` applies to pixels, for prompts, centroids or box corners."""
    R = check_rotation(R)
    v = lonlat_to_vec(lon, lat) @ R.T
    return vec_to_lonlat(v)


def _rotation_key(R: np.ndarray) -> tuple[float, ...]:
    # 1e-12 merges matrices that differ by float noise only; it moves a 32k-wide frame by < 1e-8 px
    return tuple(np.round(R, 12).ravel().tolist())


def rotation_table(R: np.ndarray, height: int, width: int, interpolation: str) -> RemapTable:
    """The cached table of :func:`rotate_erp` for frames of ``height`` x ``width``."""
    R = check_rotation(R)

    def build() -> RemapTable:
        lon, lat = lonlat_axes(height, width)
        # the source direction of output pixel d is R.T @ d
        comps = grid_directions(lon, lat, R)
        return erp_table(*comps, height, width, interpolation)

    return cached_table(("rotate", height, width, interpolation, _rotation_key(R)), build)


def rotate_erp(image: np.ndarray, R: np.ndarray, *, interpolation: str | None = None) -> np.ndarray:
    """The frame with its content rotated by ``R`` (what was at direction ``v`` is now at
    ``R @ v``); the seam and the poles are continuous.

    ``interpolation=None`` uses nearest for bool masks and integer label maps, bilinear for
    uint8/float images (see :func:`tasks.geometry.remap.default_interpolation`). Rotating a mask
    by ``R`` and back by ``R.T`` returns it up to one pixel along its outline; its spherical area
    is preserved up to the same outline band.
    """
    h, w = check_erp(image)
    table = rotation_table(R, h, w, default_interpolation(image, interpolation))
    return apply_table(table, image)
