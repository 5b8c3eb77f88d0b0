"""Cached remap tables: the one place where sphere geometry turns into ``cv2.remap`` calls.

Every resampling in this package (sphere rotation, ERP <-> perspective, ERP <-> cubemap) is
"for each output pixel, read the source at a precomputed position". The positions depend only on
the geometry (sizes, view centre, field of view, rotation), never on the pixels, so they are
computed once in float32, converted to OpenCV's fixed-point maps (``CV_16SC2`` + ``CV_16UC1``,
bilinear weights in steps of 1/32 pixel, as py360convert uses too; about twice as fast to remap
with as float maps in OpenCV 5) and kept in a byte-bounded LRU cache. A warm call is then one
``cv2.remap`` and no trigonometry.

ERP sources need two kinds of wrap that ``cv2.BORDER_WRAP`` alone gets wrong:

* horizontally the seam is continuous, which ``BORDER_WRAP`` gets right;
* vertically the image does *not* wrap: the neighbour above the first row is the first row again,
  half a turn away (going over the north pole continues at ``lon + 180``). Tables therefore clamp
  ``y`` to the row centres, so the vertical wrap never triggers, and the samples that fall in the
  half-pixel cap beyond the outermost row centres are recomputed from a four-row strip that holds
  each polar row next to its copy rolled by half the width ("pole fix-ups").

Tables are built in float32 from directions on the unit sphere, through ``arctan2`` only, so a
NaN or infinity cannot appear: every finite direction has a finite longitude and latitude, and
the builders assert it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from tasks.errors import InvalidGeometry

Interpolation = Literal["linear", "nearest"]
INTERPOLATIONS: tuple[str, ...] = ("linear", "nearest")

# cv2.remap takes coordinates as int16 in its fixed-point maps
MAX_SOURCE_SIDE = 32767
# cv2.remap handles this many channels per call; more are processed in chunks
_MAX_CHANNELS = 64


# -- cache ------------------------------------------------------------------------------------
class _TableCache:
    """LRU cache bounded by total bytes: an ERP-sized table at 3840 x 1920 is ~60 MB, a 1024^2
    perspective table ~6 MB, so a count bound alone would either waste memory or thrash."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, RemapTable] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], RemapTable]) -> RemapTable:
        with self._lock:
            table = self._items.get(key)
            if table is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return table
            self.misses += 1
        table = build()  # outside the lock: two threads may build the same table, both are correct
        with self._lock:
            if key not in self._items and table.nbytes <= self.max_bytes:
                self._items[key] = table
                self._bytes += table.nbytes
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return table

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def info(self) -> dict:
        with self._lock:
            return {"entries": len(self._items), "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses}


_CACHE = _TableCache(512 * 1024 * 1024)


def cached_table(key: Hashable, build: Callable[[], RemapTable]) -> RemapTable:
    return _CACHE.get(key, build)


def clear_cache() -> None:
    """Drop every cached table (benchmarks use it to time cold calls)."""
    _CACHE.clear()


def cache_info() -> dict:
    return _CACHE.info()


def set_cache_limit(max_bytes: int) -> None:
    """Bound the memory held by cached tables; shrinking evicts the least recently used."""
    if max_bytes < 0:
        raise ValueError(f"cache limit must be >= 0 bytes, got {max_bytes}")
    _CACHE.max_bytes = int(max_bytes)
    with _CACHE._lock:
        while _CACHE._bytes > _CACHE.max_bytes and _CACHE._items:
            _, old = _CACHE._items.popitem(last=False)
            _CACHE._bytes -= old.nbytes


def float_key(*values: float) -> tuple[float, ...]:
    """Cache-key form of geometry floats: numpy scalars and ints compare equal to floats."""
    return tuple(float(v) for v in values)


# -- tables -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PoleFixups:
    """Output pixels whose bilinear sample straddles a pole, resampled from the polar strip."""

    index: np.ndarray  # flat output indices (int64)
    map1: np.ndarray   # (1, n) CV_16SC2 positions in the 4-row strip
    map2: np.ndarray   # (1, n) CV_16UC1 fractions


@dataclass(frozen=True, eq=False)
class RemapTable:
    """A precomputed resampling: ``out[i, j] = source(map[i, j])``.

    ``source_shape`` is the (height, width) the table was built for; ``wrap`` says the source is
    an ERP frame (horizontal wrap, pole fix-ups), otherwise the source is planar and positions
    outside it read zero. ``region`` limits the write to ``out[r0:r1, c0:c1]`` of an output of
    ``out_shape`` (the rest is zero), so a small view projected onto a large ERP frame costs the
    size of its footprint, not of the frame.
    """

    map1: np.ndarray
    map2: np.ndarray | None
    interpolation: str
    source_shape: tuple[int, int]
    out_shape: tuple[int, int]
    wrap: bool
    region: tuple[int, int, int, int]
    fixups: PoleFixups | None = None
    coverage: np.ndarray | None = None  # bool (out_shape), for projections that cover part of the output

    @property
    def nbytes(self) -> int:
        n = self.map1.nbytes + (self.map2.nbytes if self.map2 is not None else 0)
        if self.fixups is not None:
            n += self.fixups.index.nbytes + self.fixups.map1.nbytes + self.fixups.map2.nbytes
        if self.coverage is not None:
            n += self.coverage.nbytes
        return n

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return apply_table(self, image)


def check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise InvalidGeometry(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


def default_interpolation(image: np.ndarray, interpolation: str | None) -> str:
    """``None`` picks nearest for masks and label maps (bool, and integer types other than
    uint8, e.g. uint16/int32 id maps) and bilinear for images (uint8, floats). A uint8 label map
    must ask for ``"nearest"`` explicitly: uint8 is what images are."""
    if interpolation is not None:
        return check_interpolation(interpolation)
    dt = np.asarray(image).dtype
    if dt == np.bool_ or (np.issubdtype(dt, np.integer) and dt != np.uint8):
        return "nearest"
    return "linear"


def _convert(x: np.ndarray, y: np.ndarray, interpolation: str) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):  # impossible by construction; guard it
        raise AssertionError("remap table contains a non-finite position")
    if interpolation == "nearest":
        m1, _ = cv2.convertMaps(x, y, cv2.CV_16SC2, nninterpolation=True)
        m2 = None
    else:
        m1, m2 = cv2.convertMaps(x, y, cv2.CV_16SC2)
        m2.setflags(write=False)
    m1.setflags(write=False)  # tables are shared through the cache
    return m1, m2


def _check_source_side(height: int, width: int) -> None:
    if max(height, width) > MAX_SOURCE_SIDE:
        raise InvalidGeometry(f"source of {width}x{height} exceeds the {MAX_SOURCE_SIDE}-pixel side cv2.remap can address")


def erp_positions(x_dir: np.ndarray, y_dir: np.ndarray, z_dir: np.ndarray, height: int, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Continuous ERP pixel position (cell centres at integers) of directions, float32.

    ``x`` is in ``[-0.5, W - 0.5]`` (the ends are the same point across the seam); ``y`` is in
    ``[-0.5, H - 0.5]`` and *not* clamped. Directions need not be unit length but must not be zero.
    """
    x_dir, y_dir, z_dir = np.broadcast_arrays(np.asarray(x_dir, dtype=np.float32),
                                              np.asarray(y_dir, dtype=np.float32),
                                              np.asarray(z_dir, dtype=np.float32))
    # in place: fresh full-size temporaries cost more in page faults than the arithmetic
    x = np.arctan2(y_dir, x_dir)
    y = np.multiply(x_dir, x_dir)
    y += y_dir * y_dir
    np.sqrt(y, out=y)  # np.hypot would be ~10x slower
    np.arctan2(z_dir, y, out=y)
    x *= np.float32(width / (2 * np.pi))
    x += np.float32(width / 2 - 0.5)
    y *= np.float32(-height / np.pi)
    y += np.float32(height / 2 - 0.5)
    return x, y


def grid_directions(lon: np.ndarray, lat: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``R.T @ vec(lon[j], lat[i])`` for a grid of longitudes (columns) and latitudes (rows), as
    three float32 (len(lat), len(lon)) arrays: the ERP pixel directions expressed in the frame
    whose axes are the columns of ``R`` (a camera's forward/right/up, or a rotation's source).

    A direction separates into a column term and a row term, so each component is one outer
    product plus one outer sum: no per-pixel trigonometry.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    cl = np.cos(lat).astype(np.float32)[:, None]
    sl = np.sin(lat).astype(np.float32)[:, None]
    co, so = np.cos(lon), np.sin(lon)
    out = []
    for k in range(3):
        col = (R[0, k] * co + R[1, k] * so).astype(np.float32)[None, :]
        c = np.multiply(cl, col)
        c += np.float32(R[2, k]) * sl
        out.append(c)
    return out[0], out[1], out[2]


def erp_table(x_dir: np.ndarray, y_dir: np.ndarray, z_dir: np.ndarray, height: int, width: int,
              interpolation: str) -> RemapTable:
    """A table that samples an ERP frame of ``height`` x ``width`` in the given directions
    (arrays of the output's shape)."""
    _check_source_side(height, width)
    check_interpolation(interpolation)
    x, y = erp_positions(x_dir, y_dir, z_dir, height, width)
    out_shape = (int(x.shape[0]), int(x.shape[1]))
    fixups = None
    if interpolation == "linear":
        top = y < 0
        bottom = y > height - 1
        polar = top | bottom
        if polar.any():
            idx = np.flatnonzero(polar)
            fx = x.ravel()[idx]
            fy_raw = y.ravel()[idx]
            # strip rows: [row 0 rolled by W/2, row 0, row H-1, row H-1 rolled by W/2]
            fy = np.where(top.ravel()[idx], fy_raw + 1.0, fy_raw - (height - 1) + 2.0).astype(np.float32)
            f1, f2 = _convert(fx[None, :], fy[None, :], "linear")
            fixups = PoleFixups(idx.astype(np.int64), f1, f2)
    np.clip(y, 0, height - 1, out=y)
    m1, m2 = _convert(x, y, interpolation)
    return RemapTable(m1, m2, interpolation, (height, width), out_shape, True, (0, out_shape[0], 0, out_shape[1]),
                      fixups)


def planar_table(x: np.ndarray, y: np.ndarray, source_shape: tuple[int, int], interpolation: str, *,
                 out_shape: tuple[int, int] | None = None, region: tuple[int, int, int, int] | None = None,
                 coverage: np.ndarray | None = None) -> RemapTable:
    """A table that samples a planar source (a perspective view, a padded cube atlas); positions
    outside the source read zero."""
    _check_source_side(*source_shape)
    check_interpolation(interpolation)
    shape = (int(x.shape[0]), int(x.shape[1]))
    out_shape = out_shape or shape
    region = region or (0, shape[0], 0, shape[1])
    if x.size:
        m1, m2 = _convert(x, y, interpolation)
    else:
        m1, m2 = np.zeros((0, 0, 2), np.int16), None
        region = (0, 0, 0, 0)
    if coverage is not None:
        coverage = np.asarray(coverage, dtype=bool)
        coverage.setflags(write=False)
    return RemapTable(m1, m2, interpolation, tuple(source_shape), tuple(out_shape), False, region, None, coverage)


# -- applying ---------------------------------------------------------------------------------
_NEAREST_VIEW = {1: np.uint8, 2: np.uint16, 4: np.int32, 8: np.int64}
_LINEAR_NATIVE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def _remap(src: np.ndarray, m1: np.ndarray, m2: np.ndarray | None, interpolation: str, wrap: bool) -> np.ndarray:
    flag = cv2.INTER_NEAREST if interpolation == "nearest" else cv2.INTER_LINEAR
    border = cv2.BORDER_WRAP if wrap else cv2.BORDER_CONSTANT
    channels = src.shape[2]
    if channels <= _MAX_CHANNELS:
        out = cv2.remap(src, m1, m2, flag, borderMode=border, borderValue=0)
        return out.reshape(*m1.shape[:2], channels)
    parts = [_remap(np.ascontiguousarray(src[..., c:c + _MAX_CHANNELS]), m1, m2, interpolation, wrap)
             for c in range(0, channels, _MAX_CHANNELS)]
    return np.concatenate(parts, axis=2)


def _run(table: RemapTable, src: np.ndarray) -> np.ndarray:
    """``src`` is (h, w, C) of a dtype cv2.remap handles for the table's interpolation."""
    r0, r1, c0, c1 = table.region
    if r1 <= r0 or c1 <= c0:  # the projection covers no output pixel centre
        return np.zeros((*table.out_shape, src.shape[2]), dtype=src.dtype)
    full = (r0, r1, c0, c1) == (0, table.out_shape[0], 0, table.out_shape[1])
    vals = _remap(src, table.map1, table.map2, table.interpolation, table.wrap)
    if table.fixups is not None:
        h = src.shape[0]
        half = src.shape[1] // 2
        strip = np.ascontiguousarray(np.stack([np.roll(src[0], half, axis=0), src[0],
                                               src[h - 1], np.roll(src[h - 1], half, axis=0)]))
        fix = _remap(strip, table.fixups.map1, table.fixups.map2, "linear", True)
        vals.reshape(-1, src.shape[2])[table.fixups.index] = fix.reshape(-1, src.shape[2])
    if full:
        return vals
    out = np.zeros((*table.out_shape, src.shape[2]), dtype=vals.dtype)
    out[r0:r1, c0:c1] = vals
    return out


def apply_table(table: RemapTable, image: np.ndarray) -> np.ndarray:
    """Resample ``image`` (H, W) or (H, W, C) through ``table``; the result keeps the dtype and the
    channel layout. Bool masks with bilinear tables are resampled as 0/1 and thresholded at 1/2
    (a smoother outline than nearest); integer types cv2 cannot interpolate go through float."""
    image = np.asarray(image)
    if image.ndim < 2:
        raise InvalidGeometry(f"expected an image of 2 or more dimensions, got shape {image.shape}")
    if tuple(image.shape[:2]) != table.source_shape:
        raise InvalidGeometry(f"image of shape {image.shape[:2]} given to a table built for {table.source_shape}")
    extra = image.shape[2:]
    src = image.reshape(*image.shape[:2], -1)
    dtype = src.dtype
    if table.interpolation == "nearest":
        view = _NEAREST_VIEW.get(dtype.itemsize)
        if view is None or dtype.kind not in "biuf":
            raise InvalidGeometry(f"cannot resample images of dtype {dtype}")
        out = _run(table, np.ascontiguousarray(src).view(view))
        out = out.view(dtype)
    elif dtype == np.bool_:
        out = _run(table, np.ascontiguousarray(src, dtype=np.float32)) >= 0.5
    elif dtype.type in _LINEAR_NATIVE:
        out = _run(table, np.ascontiguousarray(src))
    elif dtype.kind in "iuf":
        work = np.float64 if dtype.itemsize >= 4 and dtype.kind != "f" else np.float32
        out = _run(table, np.ascontiguousarray(src, dtype=work))
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(dtype)
    else:
        raise InvalidGeometry(f"cannot resample images of dtype {dtype}")
    return out.reshape(*out.shape[:2], *extra)


def sample_erp(image: np.ndarray, lon: np.ndarray, lat: np.ndarray, interpolation: str | None = None) -> np.ndarray:
    """Sample an ERP frame at arbitrary directions (uncached; for a handful of points or a test).

    ``lon``/``lat`` in radians, any shape; the result has that shape (plus the channels).
    """
    from tasks.geometry.erp import check_erp

    h, w = check_erp(image)
    interpolation = default_interpolation(image, interpolation)
    lon, lat = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    shape = lon.shape
    if lon.size == 0:
        return np.zeros((*shape, *image.shape[2:]), dtype=image.dtype)
    lon2, lat2 = lon.reshape(1, -1), lat.reshape(1, -1)
    c = np.cos(lat2)
    table = erp_table(c * np.cos(lon2), c * np.sin(lon2), np.sin(lat2), h, w, interpolation)
    out = apply_table(table, image)
    return out.reshape(*shape, *out.shape[2:])
