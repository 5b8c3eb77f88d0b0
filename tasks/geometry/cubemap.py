"""ERP <-> cubemap, both ways, through cached remap tables.

Faces, in this order (py360convert's ``FRBLUD``), each a 90-degree perspective view
(:class:`tasks.geometry.perspective.PerspectiveView`, ``roll = 0``) centred at (radians):

====  ==================  =============================================
face  centre (lon, lat)   orientation (top of the face / right of the face)
====  ==================  =============================================
F     (0, 0)              north / lon +90 (east)
R     (+pi/2, 0)          north / lon 180 (back)
B     (pi, 0)             north / lon -90
L     (-pi/2, 0)          north / lon 0 (front)
U     (0, +pi/2)          back (lon 180) / lon +90; the front is at the bottom edge
D     (0, -pi/2)          front (lon 0) / lon +90; the back is at the bottom edge
====  ==================  =============================================

This is exactly py360convert's face orientation, so its ``"horizon"``, ``"list"``, ``"dict"`` and
``"dice"`` layouts convert with :func:`cube_to_horizon` / :func:`horizon_to_cube` and no flips.
The pixel grids differ by the half-pixel convention: here face pixel centres are at
``(2 i + 1) / fw - 1`` on the unit cube (cells tile the face), py360convert's ``e2c`` puts them
at ``2 i / (fw - 1) - 1`` (edge pixels centred on the cube edges) and its ``c2e`` reads them at
``2 i / fw - 1``.

For bilinear sampling across face edges, ``cubemap_to_erp`` pads every face with one pixel taken
from its neighbours (found geometrically, not from a hand-written adjacency table), so the edges
and corners of the cube are continuous.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from tasks.geometry.erp import check_erp, check_erp_shape, lonlat_axes
from tasks.geometry.perspective import PerspectiveView, view_directions
from tasks.geometry.remap import (
    InvalidGeometry,
    RemapTable,
    apply_table,
    cached_table,
    default_interpolation,
    erp_table,
    grid_directions,
    planar_table,
)
from tasks.geometry.rotation import rotation_matrix

FACES: tuple[str, ...] = ("F", "R", "B", "L", "U", "D")
FACE_CENTERS: dict[str, tuple[float, float]] = {
    "F": (0.0, 0.0), "R": (math.pi / 2, 0.0), "B": (math.pi, 0.0),
    "L": (-math.pi / 2, 0.0), "U": (0.0, math.pi / 2), "D": (0.0, -math.pi / 2),
}
CUBE_FORMATS: tuple[str, ...] = ("dict", "list", "horizon", "dice")
# py360convert's dice: (column, row) of each face in a 4 x 3 grid
_DICE_CELLS = {"F": (1, 1), "R": (2, 1), "B": (3, 1), "L": (0, 1), "U": (1, 0), "D": (1, 2)}


def _face_rotations() -> np.ndarray:
    return np.stack([rotation_matrix(*FACE_CENTERS[f]) for f in FACES])


def face_view(face: str, face_width: int) -> PerspectiveView:
    """The perspective view a face is: 90 degrees, square, centred on the face."""
    if face not in FACE_CENTERS:
        raise InvalidGeometry(f"unknown cube face {face!r}; faces are {FACES}")
    lon, lat = FACE_CENTERS[face]
    return PerspectiveView(lon, lat, 90.0, face_width, face_width)


def _check_face_width(face_width: int) -> int:
    if isinstance(face_width, bool) or int(face_width) != face_width or int(face_width) < 1:
        raise InvalidGeometry(f"face width must be a positive integer, got {face_width!r}")
    return int(face_width)


# -- layouts ----------------------------------------------------------------------------------
def _check_faces(faces: list[np.ndarray]) -> list[np.ndarray]:
    if len(faces) != 6:
        raise InvalidGeometry(f"a cubemap has 6 faces, got {len(faces)}")
    faces = [np.asarray(f) for f in faces]
    first = faces[0]
    if first.ndim < 2 or first.shape[0] != first.shape[1] or first.shape[0] < 1:
        raise InvalidGeometry(f"cube faces must be square, got shape {first.shape}")
    for name, f in zip(FACES, faces):
        if f.shape != first.shape or f.dtype != first.dtype:
            raise InvalidGeometry(f"face {name} is {f.shape} {f.dtype}, face F is {first.shape} {first.dtype}")
    return faces


def detect_format(cube: object) -> str:
    if isinstance(cube, dict):
        return "dict"
    if isinstance(cube, (list, tuple)):
        return "list"
    arr = np.asarray(cube)
    if arr.ndim >= 2 and arr.shape[0] >= 1:
        if arr.shape[1] == 6 * arr.shape[0]:
            return "horizon"
        if arr.shape[0] % 3 == 0 and arr.shape[1] * 3 == arr.shape[0] * 4:
            return "dice"
    raise InvalidGeometry(f"cannot tell the cubemap layout of an array of shape {arr.shape}: a horizon is "
                          "(fw, 6 fw), a dice (3 fw, 4 fw)")


def cube_to_horizon(cube: object, cube_format: str | None = None) -> np.ndarray:
    """Any layout -> the (fw, 6 fw[, C]) row of faces in ``FRBLUD`` order."""
    fmt = cube_format or detect_format(cube)
    if fmt == "dict":
        missing = [f for f in FACES if f not in cube]  # type: ignore[operator]
        if missing:
            raise InvalidGeometry(f"cubemap dict lacks faces {missing}")
        return np.concatenate(_check_faces([cube[f] for f in FACES]), axis=1)  # type: ignore[index]
    if fmt == "list":
        return np.concatenate(_check_faces(list(cube)), axis=1)  # type: ignore[arg-type]
    arr = np.asarray(cube)
    if fmt == "horizon":
        if arr.ndim < 2 or arr.shape[0] < 1 or arr.shape[1] != 6 * arr.shape[0]:
            raise InvalidGeometry(f"a horizon cubemap is (fw, 6 fw), got {arr.shape}")
        return arr
    if fmt == "dice":
        if arr.ndim < 2 or arr.shape[0] % 3 or arr.shape[0] < 3 or arr.shape[1] * 3 != arr.shape[0] * 4:
            raise InvalidGeometry(f"a dice cubemap is (3 fw, 4 fw), got {arr.shape}")
        fw = arr.shape[0] // 3
        return np.concatenate([arr[r * fw:(r + 1) * fw, c * fw:(c + 1) * fw]
                               for c, r in (_DICE_CELLS[f] for f in FACES)], axis=1)
    raise InvalidGeometry(f"unknown cube format {fmt!r}; formats are {CUBE_FORMATS}")


def horizon_to_cube(horizon: np.ndarray, cube_format: str = "dict") -> dict[str, np.ndarray] | list[np.ndarray] | np.ndarray:
    """The (fw, 6 fw[, C]) row of faces -> ``cube_format`` (faces of dict/list are views of it)."""
    horizon = cube_to_horizon(horizon, "horizon")
    fw = horizon.shape[0]
    faces = [horizon[:, i * fw:(i + 1) * fw] for i in range(6)]
    if cube_format == "horizon":
        return horizon
    if cube_format == "list":
        return faces
    if cube_format == "dict":
        return dict(zip(FACES, faces))
    if cube_format == "dice":
        dice = np.zeros((3 * fw, 4 * fw, *horizon.shape[2:]), dtype=horizon.dtype)
        for name, face in zip(FACES, faces):
            c, r = _DICE_CELLS[name]
            dice[r * fw:(r + 1) * fw, c * fw:(c + 1) * fw] = face
        return dice
    raise InvalidGeometry(f"unknown cube format {cube_format!r}; formats are {CUBE_FORMATS}")


# -- ERP -> cubemap ---------------------------------------------------------------------------
def cubemap_table(face_width: int, erp_height: int, erp_width: int, interpolation: str) -> RemapTable:
    """Cached table sampling an ERP frame into the horizon layout."""
    face_width = _check_face_width(face_width)
    check_erp_shape(erp_height, erp_width)

    def build() -> RemapTable:
        parts = [view_directions(R, 1.0, 1.0, face_width, face_width) for R in _face_rotations()]
        dirs = [np.concatenate([p[k] for p in parts], axis=1) for k in range(3)]
        return erp_table(*dirs, erp_height, erp_width, interpolation)

    return cached_table(("e2c", face_width, erp_height, erp_width, interpolation), build)


def erp_to_cubemap(erp: np.ndarray, face_width: int, *, interpolation: str | None = None,
                   cube_format: str = "dict") -> dict[str, np.ndarray] | list[np.ndarray] | np.ndarray:
    """Six ``face_width`` square faces of an ERP frame, in ``cube_format`` (``"dict"`` keyed
    ``F R B L U D``, ``"list"`` in that order, ``"horizon"`` (fw, 6 fw) or py360convert's
    ``"dice"``). Nearest for masks and label maps, bilinear for images unless told otherwise."""
    h, w = check_erp(erp)
    if cube_format not in CUBE_FORMATS:
        raise InvalidGeometry(f"unknown cube format {cube_format!r}; formats are {CUBE_FORMATS}")
    table = cubemap_table(face_width, h, w, default_interpolation(erp, interpolation))
    return horizon_to_cube(apply_table(table, erp), cube_format)


# -- cubemap -> ERP ---------------------------------------------------------------------------
def _face_coords(x: np.ndarray, y: np.ndarray, z: np.ndarray, face_width: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face index and continuous in-face position (centres at integers) of directions: the face
    is the one whose centre is nearest, i.e. whose camera axis has the largest component."""
    ax, ay, az = np.abs(x), np.abs(y), np.abs(z)
    face = np.where(az >= np.maximum(ax, ay), np.where(z > 0, 4, 5),
                    np.where(ax >= ay, np.where(x > 0, 0, 2), np.where(y > 0, 1, 3))).astype(np.int8)
    fx = np.empty(x.shape, np.float32)
    fy = np.empty(x.shape, np.float32)
    half = np.float32(face_width / 2)
    for f, R in enumerate(_face_rotations().astype(np.float32)):
        sel = face == f
        d = np.stack([x[sel], y[sel], z[sel]], axis=-1)
        c = d @ R  # camera coordinates: forward, right, up
        fx[sel] = (c[:, 1] / c[:, 0] + 1) * half - np.float32(0.5)
        fy[sel] = (-c[:, 2] / c[:, 0] + 1) * half - np.float32(0.5)
    return face, fx, fy


@lru_cache(maxsize=16)
def _atlas_border(face_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``(dst, src)``: each one-pixel border cell of the padded atlas (6 faces of
    ``fw + 2`` side by side) and the horizon pixel nearest to its direction."""
    fw = face_width
    p = fw + 2
    idx = np.arange(-1, fw + 1)
    ii, jj = np.meshgrid(idx, idx, indexing="ij")
    border = (ii == -1) | (ii == fw) | (jj == -1) | (jj == fw)
    bi, bj = ii[border], jj[border]
    u = (bj + 0.5) * (2.0 / fw) - 1.0
    v = (bi + 0.5) * (2.0 / fw) - 1.0
    dst, src = [], []
    for f, R in enumerate(_face_rotations()):
        d = np.stack([np.ones_like(u), u, -v], axis=-1) @ R.T
        g, gx, gy = _face_coords(d[:, 0], d[:, 1], d[:, 2], fw)
        gx = np.clip(np.rint(gx), 0, fw - 1).astype(np.int64)
        gy = np.clip(np.rint(gy), 0, fw - 1).astype(np.int64)
        dst.append((bi + 1) * 6 * p + f * p + bj + 1)
        src.append(gy * 6 * fw + g.astype(np.int64) * fw + gx)
    dst_a, src_a = np.concatenate(dst), np.concatenate(src)
    dst_a.setflags(write=False)
    src_a.setflags(write=False)
    return dst_a, src_a


def _atlas(horizon: np.ndarray) -> np.ndarray:
    """The faces with a one-pixel border from their neighbours, side by side: (fw+2, 6 (fw+2)[, C])."""
    fw = horizon.shape[0]
    p = fw + 2
    atlas = np.empty((p, 6 * p, *horizon.shape[2:]), dtype=horizon.dtype)
    for f in range(6):
        atlas[1:fw + 1, f * p + 1:f * p + 1 + fw] = horizon[:, f * fw:(f + 1) * fw]
    dst, src = _atlas_border(fw)
    flat_a = atlas.reshape(p * 6 * p, -1)
    flat_a[dst] = horizon.reshape(fw * 6 * fw, -1)[src]
    return atlas


def _face_blocks(face: int, height: int, width: int) -> list[tuple[slice, slice]]:
    """ERP blocks (row slice, column slice) that contain every pixel of a face, with one pixel
    of margin: side faces reach |lat| <= 45 deg within 45 deg of their centre longitude, the
    polar faces reach down to atan(1/sqrt 2) = 35.26 deg. About 1.1 frames in all."""
    lon, lat = lonlat_axes(height, width)
    px = np.pi / height
    if face >= 4:
        sign = 1 if face == 4 else -1
        rows = np.flatnonzero(sign * lat >= math.atan(1 / math.sqrt(2)) - 2 * px)
        return [(slice(int(rows[0]), int(rows[-1]) + 1), slice(0, width))]
    rows = np.flatnonzero(np.abs(lat) <= math.pi / 4 + 2 * px)
    rs = slice(int(rows[0]), int(rows[-1]) + 1)
    centre = FACE_CENTERS[FACES[face]][0]
    dlon = np.mod(lon - centre + math.pi, 2 * math.pi) - math.pi
    cols = np.flatnonzero(np.abs(dlon) <= math.pi / 4 + 2 * px)
    breaks = np.flatnonzero(np.diff(cols) != 1)  # the back face straddles the seam
    runs = np.split(cols, breaks + 1)
    return [(rs, slice(int(r[0]), int(r[-1]) + 1)) for r in runs if r.size]


def _build_erp_from_cubemap(face_width: int, erp_height: int, erp_width: int, interpolation: str) -> RemapTable:
    """For each ERP pixel, the face whose axis is closest (the largest forward component; ties go
    to the first face in FRBLUD order) and the position in that face's padded atlas cell."""
    lon, lat = lonlat_axes(erp_height, erp_width)
    best = np.full((erp_height, erp_width), -np.inf, np.float32)
    ax = np.zeros((erp_height, erp_width), np.float32)
    ay = np.zeros((erp_height, erp_width), np.float32)
    half = np.float32(face_width / 2)
    lo, hi = np.float32(-0.5), np.float32(face_width - 0.5)
    for f, R in enumerate(_face_rotations()):
        for rs, cs in _face_blocks(f, erp_height, erp_width):
            cx, cy, cz = grid_directions(lon[cs], lat[rs], R)
            take = cx > best[rs, cs]
            np.copyto(best[rs, cs], cx, where=take)
            inv = np.divide(np.float32(1), cx, out=np.zeros_like(cx), where=take)
            cy *= inv
            cy += 1
            cy *= half
            cy -= np.float32(0.5)
            np.clip(cy, lo, hi, out=cy)
            cy += np.float32(f * (face_width + 2) + 1)
            np.copyto(ax[rs, cs], cy, where=take)
            cz *= inv
            cz -= 1
            cz *= -half
            cz -= np.float32(0.5)
            np.clip(cz, lo, hi, out=cz)
            cz += np.float32(1)
            np.copyto(ay[rs, cs], cz, where=take)
    if not (best > 0).all():  # every direction has a face in front of it; the blocks guarantee it
        raise AssertionError("cube face blocks left ERP pixels without a face")
    return planar_table(ax, ay, (face_width + 2, 6 * (face_width + 2)), interpolation)


def erp_from_cubemap_table(face_width: int, erp_width: int, interpolation: str) -> RemapTable:
    """Cached table sampling the padded atlas of a cubemap into an ERP frame."""
    face_width = _check_face_width(face_width)
    erp_height = erp_width // 2
    check_erp_shape(erp_height, erp_width, "ERP target")

    def build() -> RemapTable:
        return _build_erp_from_cubemap(face_width, erp_height, erp_width, interpolation)

    return cached_table(("c2e", face_width, erp_height, erp_width, interpolation), build)


def cubemap_to_erp(cube: object, erp_width: int, *, interpolation: str | None = None,
                   cube_format: str | None = None) -> np.ndarray:
    """An ERP frame ``erp_width`` x ``erp_width / 2`` from a cubemap in any layout (detected
    when ``cube_format`` is None). Every ERP pixel is covered; the seam and poles are continuous."""
    horizon = np.ascontiguousarray(cube_to_horizon(cube, cube_format))
    table = erp_from_cubemap_table(horizon.shape[0], int(erp_width), default_interpolation(horizon, interpolation))
    return apply_table(table, _atlas(horizon))
