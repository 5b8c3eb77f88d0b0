"""ERP <-> cubemap, checked against py360convert 1.0.4 and against geometry.

py360convert and this package share the face order (FRBLUD) and orientation, but not the pixel
grid (see :mod:`tasks.geometry.cubemap`):

* its ``e2c`` samples face pixel ``i`` at ``2 i / (fw - 1) - 1`` on the cube, ours at
  ``(2 i + 1) / fw - 1``. With ``face_w = 2 fw + 1`` its odd pixels are exactly our grid, so the
  comparison is sample for sample;
* its ``c2e`` reads face pixel ``i`` as lying at ``2 i / fw - 1`` (half a pixel off both of the
  above), so each library is given the cube of the same scene rendered on its own grid, and both
  ERP results are compared with the scene and with each other.
"""

import math

import cv2
import numpy as np
import py360convert
import pytest

from tasks.errors import NotEquirectangular
from tasks.geometry import erp
from tasks.geometry.components import boundary
from tasks.geometry.cubemap import (
    FACES,
    _atlas,
    cube_to_horizon,
    cubemap_to_erp,
    erp_to_cubemap,
    face_view,
    horizon_to_cube,
)
from tasks.geometry.remap import InvalidGeometry
from tasks.geometry.rotation import rotation_matrix

H, W = 192, 384
FW = 48


def field(v: np.ndarray) -> np.ndarray:
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([128 + 100 * np.sin(5.0 * x + 3.3 * y + 0.3),
                     128 + 100 * np.cos(4.7 * z - 2.8 * x + 1.2 * y * z),
                     128 + 90 * np.sin(6.3 * y - 3.1 * z + 2.5 * x * y)], axis=-1)


def field_erp(h: int = H, w: int = W) -> np.ndarray:
    return np.rint(field(erp.unit_vectors(h, w).astype(np.float64))).astype(np.uint8)


def cap(lon, lat, radius, h=H, w=W):
    return erp.unit_vectors(h, w) @ erp.lonlat_to_vec(lon, lat) >= np.cos(radius)


def near_outline(mask: np.ndarray, px: int = 1) -> np.ndarray:
    edge = boundary(mask, wrap=True) | boundary(~mask, wrap=True)
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return erp.unwrap_pad(cv2.dilate(erp.wrap_pad(edge.astype(np.uint8), px), k), px).astype(bool)


def rendered_cube(fw: int, grid: str) -> np.ndarray:
    """The field rendered on each face, horizon layout; ``grid`` is ``"ours"`` (cell centres) or
    ``"py_c2e"`` (pixel i at 2 i / fw - 1, what py360convert's c2e assumes)."""
    i = np.arange(fw)
    t = (2 * i + 1) / fw - 1 if grid == "ours" else 2 * i / fw - 1
    u, v = np.meshgrid(t, t)
    faces = []
    for f in FACES:
        R = face_view(f, fw).rotation
        d = np.stack([np.ones_like(u), u, -v], axis=-1) @ R.T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        faces.append(np.rint(field(d)).astype(np.uint8))
    return np.concatenate(faces, axis=1)


@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_e2c_matches_py360convert_sample_for_sample(mode):
    img = field_erp()
    ours = erp_to_cubemap(img, FW, interpolation=mode, cube_format="horizon")
    py = py360convert.e2c(img, 2 * FW + 1, mode="bilinear" if mode == "linear" else "nearest", cube_format="horizon")
    theirs = py.reshape(2 * FW + 1, 6, 2 * FW + 1, 3)[1::2, :, 1::2].reshape(FW, 6 * FW, 3)
    err = np.abs(ours.astype(np.int16) - theirs)
    if mode == "linear":
        assert err.max() <= 1
    else:
        assert (err > 0).any(axis=-1).mean() < 0.02  # ties at exactly half a pixel may round apart


def test_faces_are_90_degree_views_in_py360convert_orientation():
    img = field_erp()
    faces = erp_to_cubemap(img, FW)
    py = py360convert.e2c(img, 2 * FW + 1, cube_format="dict")
    for f in FACES:
        assert np.array_equal(faces[f], face_view(f, FW).sample(img))
        err = np.abs(faces[f].astype(np.int16) - py[f][1::2, 1::2])
        assert err.max() <= 1, f
    # explicit orientation: the front is at the bottom of U and the top of D; R's right is the back
    blob = cap(0, math.radians(60), 0.15)
    u = erp_to_cubemap(blob, FW)["U"]
    ys, xs = np.nonzero(u)
    assert ys.mean() > FW / 2 and abs(xs.mean() - (FW - 1) / 2) < 1
    d = erp_to_cubemap(cap(0, math.radians(-60), 0.15), FW)["D"]
    assert np.nonzero(d)[0].mean() < FW / 2
    r = erp_to_cubemap(cap(math.radians(120), 0, 0.15), FW)["R"]
    assert np.nonzero(r)[1].mean() > FW / 2


def test_c2e_matches_py360convert_and_the_scene():
    fw = 96
    truth = field(erp.unit_vectors(H, W).astype(np.float64))
    ours = cubemap_to_erp(rendered_cube(fw, "ours"), W).astype(np.float64)
    theirs = py360convert.c2e(rendered_cube(fw, "py_c2e"), H, W, mode="bilinear", cube_format="horizon")
    theirs = theirs.astype(np.float64)
    e_ours, e_theirs = np.abs(ours - truth), np.abs(theirs - truth)
    assert e_ours.mean() < 1.0 and np.percentile(e_ours, 99) < 4
    assert e_ours.mean() <= e_theirs.mean() + 0.2
    err = np.abs(ours - theirs)
    assert err.mean() < 1.5 and np.percentile(err, 99) < 6


def test_erp_to_cubemap_and_back():
    img = field_erp()
    back = cubemap_to_erp(erp_to_cubemap(img, 2 * FW), W)
    err = np.abs(back.astype(np.int16) - img)
    assert err.mean() < 1.5 and np.percentile(err, 99) <= 6
    m = cap(math.pi - 0.1, 0.3, 0.4) | cap(1.0, 1.3, 0.3) | cap(-0.8, -0.75, 0.25)  # seam, pole, cube corner
    mb = cubemap_to_erp(erp_to_cubemap(m, 2 * FW), W)
    assert mb.dtype == bool and not ((mb != m) & ~near_outline(m)).any()


@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_every_erp_pixel_comes_from_the_nearest_face(mode):
    cube = np.concatenate([np.full((16, 16), 10 * (k + 1), np.uint8) for k in range(6)], axis=1)
    out = cubemap_to_erp(cube, W, interpolation=mode)
    v = erp.unit_vectors(H, W).astype(np.float64)
    axes = np.stack([face_view(f, 16).rotation[:, 0] for f in FACES])
    score = v @ axes.T
    best = np.argmax(score, axis=-1)
    top2 = np.sort(score, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 0.05  # away from the cube edges
    assert np.array_equal(out[clear], (10 * (best + 1))[clear].astype(np.uint8))
    white = cubemap_to_erp(np.full((16, 96, 3), 200, np.uint8), W, interpolation=mode)
    assert (white == 200).all()  # no hole at the seam, the poles or the cube corners


def test_face_padding_matches_py360convert_neighbours():
    rng = np.random.default_rng(0)
    horizon = rng.integers(0, 256, (12, 72), dtype=np.uint8)
    ours = _atlas(horizon).reshape(14, 6, 14).transpose(1, 0, 2)
    faces = np.stack(np.split(horizon, 6, axis=1))
    theirs = py360convert.utils.CubeFaceSampler._pad(None, faces)
    inner = np.ones((14, 14), bool)
    inner[[0, 0, -1, -1], [0, -1, 0, -1]] = False  # the cube corners have no single neighbour
    assert np.array_equal(ours[:, inner], theirs[:, inner])


def test_layouts_convert_like_py360convert():
    rng = np.random.default_rng(1)
    h3 = rng.integers(0, 256, (8, 48, 3), dtype=np.uint8)
    h2 = h3[..., 0]
    for h in (h3, h2):
        dice = horizon_to_cube(h, "dice")
        py_h = h if h.ndim == 3 else h[..., None]
        assert np.array_equal(dice.reshape(24, 32, -1), py360convert.utils.cube_h2dice(py_h))
        d = horizon_to_cube(h, "dict")
        assert all(np.array_equal(d[k], v) for k, v in zip(FACES, np.split(h, 6, axis=1)))
        for fmt in ("dict", "list", "dice", "horizon"):
            assert np.array_equal(cube_to_horizon(horizon_to_cube(h, fmt)), h)
            assert np.array_equal(cube_to_horizon(horizon_to_cube(h, fmt), fmt), h)
    assert np.array_equal(cube_to_horizon(py360convert.utils.cube_h2dice(h3)), h3)
    img = field_erp()
    for fmt in ("dict", "list", "dice"):
        assert np.array_equal(cubemap_to_erp(erp_to_cubemap(img, FW, cube_format=fmt), W),
                              cubemap_to_erp(erp_to_cubemap(img, FW, cube_format="horizon"), W))


def test_bad_inputs_are_rejected():
    img = field_erp()
    with pytest.raises(NotEquirectangular):
        erp_to_cubemap(np.zeros((100, 100)), 16)
    with pytest.raises(NotEquirectangular):
        cubemap_to_erp(np.zeros((16, 96)), 385)
    for bad in (0, -4, 2.5):
        with pytest.raises(InvalidGeometry):
            erp_to_cubemap(img, bad)
    faces = erp_to_cubemap(img, 16, cube_format="list")
    with pytest.raises(InvalidGeometry, match="6 faces"):
        cubemap_to_erp(faces[:5], W)
    with pytest.raises(InvalidGeometry, match="face"):
        cubemap_to_erp(faces[:5] + [faces[5][:8]], W)
    with pytest.raises(InvalidGeometry, match="square"):
        cubemap_to_erp([f[:8] for f in faces], W)
    with pytest.raises(InvalidGeometry, match="lacks"):
        cubemap_to_erp({k: faces[0] for k in "FRBLU"}, W)
    with pytest.raises(InvalidGeometry, match="layout"):
        cubemap_to_erp(np.zeros((16, 50)), W)
    with pytest.raises(InvalidGeometry, match="format"):
        erp_to_cubemap(img, 16, cube_format="cross")


@pytest.mark.parametrize("kind", ["empty", "full", "one"])
def test_empty_full_and_one_pixel_masks(kind):
    m = {"empty": np.zeros((H, W), bool), "full": np.ones((H, W), bool),
         "one": np.pad(np.ones((1, 1), bool), ((0, H - 1), (W - 1, 0)))}[kind]
    faces = erp_to_cubemap(m, FW, cube_format="horizon")
    assert faces.dtype == bool and faces.shape == (FW, 6 * FW)
    back = cubemap_to_erp(faces, W)
    assert back.dtype == bool and back.shape == (H, W)
    if kind != "one":
        assert back.all() == m.all() and back.any() == m.any()
    cube_one = np.zeros((FW, 6 * FW), bool)
    cube_one[0, 0] = True
    e = cubemap_to_erp(cube_one, W)
    assert e.sum() <= 8


def test_rotated_cubes_agree_with_rotated_frames():
    """A cubemap of a rotated frame, taken back, is the rotated frame: the two geometries agree."""
    from tasks.geometry.rotation import rotate_erp

    img = field_erp()
    R = rotation_matrix(0.7, -0.4, 0.3)
    rotated = rotate_erp(img, R)
    via_cube = cubemap_to_erp(erp_to_cubemap(rotated, 2 * FW), W)
    err = np.abs(via_cube.astype(np.int16) - rotated)
    assert err.mean() < 1.5
