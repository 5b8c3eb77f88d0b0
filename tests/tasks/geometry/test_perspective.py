"""ERP <-> perspective, checked against py360convert's ``e2p`` and against geometry.

Mapping to py360convert 1.0.4 (established by ``test_py360convert_mapping_on_an_asymmetric_image``
with a field that has no symmetry, so a flipped axis or sign could not pass):

* ``u_deg = degrees(lon)`` (both positive to the right), ``v_deg = degrees(lat)`` (both up);
* ``in_rot_deg = -degrees(roll)``;
* py360convert puts the outermost pixel *centres* on the field-of-view edge, we put the image
  *edges* there: ``tan(fov_py / 2) = tan(fov / 2) * (n - 1) / n`` for each axis of ``n`` pixels;
* the ERP pixel grid is the same (cell centres at ``(x + 0.5) / W * 360 - 180`` degrees).
"""

import math

import cv2
import numpy as np
import py360convert
import pytest

from tasks.errors import NotEquirectangular
from tasks.geometry import erp
from tasks.geometry.components import boundary, wrap_components
from tasks.geometry.perspective import (
    PerspectiveView,
    erp_to_perspective,
    perspective_mask_to_erp,
    perspective_to_erp,
)
from tasks.geometry.remap import InvalidGeometry, cache_info, clear_cache

H, W = 256, 512


def field(v: np.ndarray) -> np.ndarray:
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([128 + 100 * np.sin(5.0 * x + 3.3 * y + 0.3),
                     128 + 100 * np.cos(4.7 * z - 2.8 * x + 1.2 * y * z),
                     128 + 90 * np.sin(6.3 * y - 3.1 * z + 2.5 * x * y)], axis=-1)


def field_erp(h: int = H, w: int = W) -> np.ndarray:
    return np.rint(field(erp.unit_vectors(h, w).astype(np.float64))).astype(np.uint8)


def cap(lon, lat, radius, h=H, w=W):
    return erp.unit_vectors(h, w) @ erp.lonlat_to_vec(lon, lat) >= np.cos(radius)


def near_outline(mask: np.ndarray, px: int = 1, wrap: bool = True) -> np.ndarray:
    edge = boundary(mask, wrap=wrap) | boundary(~mask, wrap=wrap)
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    if not wrap:
        return cv2.dilate(edge.astype(np.uint8), k).astype(bool)
    return erp.unwrap_pad(cv2.dilate(erp.wrap_pad(edge.astype(np.uint8), px), k), px).astype(bool)


def py_fov(fov_deg: float, width: int, height: int) -> tuple[float, float]:
    t = math.tan(math.radians(fov_deg) / 2)
    return (math.degrees(2 * math.atan(t * (width - 1) / width)),
            math.degrees(2 * math.atan(t * height / width * (height - 1) / height)))


@pytest.mark.parametrize("lon,lat,fov,w,h,roll", [
    (0, 0, 90, 128, 128, 0), (35, 20, 90, 128, 128, 0), (-120, -40, 60, 160, 96, 0),
    (180, 0, 90, 128, 128, 0), (-180, 10, 75, 96, 128, 0),    # centred on the seam
    (20, 90, 90, 128, 128, 0), (-60, -90, 100, 128, 96, 0),   # centred on a pole
    (30, 20, 90, 128, 128, 25), (150, -60, 70, 128, 96, -40),  # rolled
])
def test_py360convert_mapping_on_an_asymmetric_image(lon, lat, fov, w, h, roll):
    img = field_erp()
    ours = erp_to_perspective(img, lon=math.radians(lon), lat=math.radians(lat), fov_deg=fov, width=w, height=h,
                              roll=math.radians(roll))
    theirs = py360convert.e2p(img, py_fov(fov, w, h), lon, lat, (h, w), in_rot_deg=-roll, mode="bilinear")
    err = np.abs(ours.astype(np.int16) - theirs)
    assert err.mean() < 0.5 and np.percentile(err, 99) <= 2
    ours_nn = erp_to_perspective(img, lon=math.radians(lon), lat=math.radians(lat), fov_deg=fov, width=w, height=h,
                                 roll=math.radians(roll), interpolation="nearest")
    theirs_nn = py360convert.e2p(img, py_fov(fov, w, h), lon, lat, (h, w), in_rot_deg=-roll, mode="nearest")
    assert (ours_nn != theirs_nn).any(axis=-1).mean() < 0.02  # ties at exactly half a pixel may round apart


def test_view_orientation_right_is_east_up_is_north_and_roll_turns_content_clockwise():
    m = cap(math.radians(100), math.radians(25), math.radians(4))  # north-east of lon 90
    v = erp_to_perspective(m, lon=math.pi / 2, lat=0, fov_deg=90, width=101, height=101)
    ys, xs = np.nonzero(v)
    assert xs.mean() > 50 and ys.mean() < 50
    m = cap(math.radians(20), 0, math.radians(4))  # due right of the centre
    v = erp_to_perspective(m, lon=0, lat=0, fov_deg=90, width=101, height=101, roll=math.radians(30))
    ys, xs = np.nonzero(v)
    assert xs.mean() > 50 and ys.mean() > 50  # right and below: the content turned clockwise


def test_pixel_and_direction_round_trip():
    view = PerspectiveView(2.0, -0.7, 80, 64, 48, roll=0.3)
    ys, xs = np.mgrid[0:48, 0:64]
    lon, lat = view.pixel_to_lonlat(xs, ys)
    x, y, front = view.lonlat_to_pixel(lon, lat)
    assert front.all() and np.allclose(x, xs, atol=1e-9) and np.allclose(y, ys, atol=1e-9)
    # the sampled view agrees with the field at those directions
    img = field_erp(512, 1024)
    v = view.sample(img).astype(np.float64)
    truth = field(erp.lonlat_to_vec(lon, lat))
    assert np.abs(v - truth).mean() < 2
    _, _, front = view.lonlat_to_pixel(2.0 + math.pi, 0.7)  # the antipode is behind the camera
    assert not front


@pytest.mark.parametrize("lon,lat", [(0.3, 0.2), (math.pi, 0), (-math.pi, -0.4), (0.5, math.pi / 2), (2, -math.pi / 2)])
def test_image_to_view_and_back_inside_the_covered_area(lon, lat):
    img = field_erp()
    v = erp_to_perspective(img, lon=lon, lat=lat, fov_deg=90, width=256, height=256)
    back, cov = perspective_to_erp(v, lon=lon, lat=lat, fov_deg=90, erp_width=W)
    assert cov.any() and not back[~cov].any()
    err = np.abs(back.astype(np.int16) - img)[cov]
    assert err.mean() < 1.5 and np.percentile(err, 99) <= 6


@pytest.mark.parametrize("lon,lat", [(0.3, 0.2), (math.pi, 0.1), (0.5, math.pi / 2), (-2, -1.3)])
def test_mask_to_view_and_back_is_exact_inside_coverage_up_to_the_outline(lon, lat):
    m = cap(lon + 0.2, lat - 0.1 if lat > 0 else lat + 0.1, 0.3) | cap(lon - 0.3, lat, 0.1)
    v = erp_to_perspective(m, lon=lon, lat=lat, fov_deg=100, width=300, height=300)
    assert v.dtype == bool and v.any()
    back = perspective_mask_to_erp(v, lon=lon, lat=lat, fov_deg=100, erp_width=W)
    cov = PerspectiveView(lon, lat, 100, 300, 300).coverage(W)
    diff = (back != m) & cov
    assert not (diff & ~near_outline(m)).any()
    assert not (back & ~cov).any()


@pytest.mark.parametrize("lon,lat,fov", [(0.4, 0.3, 60), (math.pi, 0, 90), (0, math.pi / 2, 90), (1, -1.2, 45)])
def test_a_mask_drawn_on_a_view_lands_on_the_frame(lon, lat, fov):
    """The verifier's direction: a mask drawn on a view, projected to ERP and looked at again."""
    vm = np.zeros((120, 160), bool)
    cv2.ellipse(vm.view(np.uint8), (70, 60), (40, 25), 30, 0, 360, 1, -1)
    vm[10:20, 120:150] = True
    e = perspective_mask_to_erp(vm, lon=lon, lat=lat, fov_deg=fov, erp_width=2048)
    again = erp_to_perspective(e, lon=lon, lat=lat, fov_deg=fov, width=160, height=120)
    diff = again != vm
    assert not (diff & ~near_outline(vm, 1, wrap=False)).any()
    assert wrap_components(e)[1] == 2


def test_coverage_is_the_view_frustum():
    view = PerspectiveView(2.5, 0.4, 70, 90, 60, roll=0.2)
    cov = view.coverage(W)
    lon, lat = erp.lonlat_axes(H, W)
    x, y, front = view.lonlat_to_pixel(lon[None, :], lat[:, None])
    with np.errstate(invalid="ignore"):
        inside = front & (x >= -0.5) & (x <= 89.5) & (y >= -0.5) & (y <= 59.5)
        edge = front & ((np.abs(x + 0.5) < 1e-3) | (np.abs(x - 89.5) < 1e-3) | (np.abs(y + 0.5) < 1e-3)
                        | (np.abs(y - 59.5) < 1e-3))
    assert not ((cov != inside) & ~edge).any()


def test_views_at_the_seam_and_the_poles():
    img = field_erp()
    at_seam = erp_to_perspective(img, lon=math.pi, lat=0, fov_deg=90, width=128, height=128, interpolation="nearest")
    rolled = erp_to_perspective(erp.roll(img, W // 2), lon=0, lat=0, fov_deg=90, width=128, height=128,
                                interpolation="nearest")
    assert np.array_equal(at_seam, rolled)
    # no black column where the view crosses the seam
    lin = erp_to_perspective(img, lon=math.pi, lat=0, fov_deg=90, width=129, height=128)
    assert lin.sum(axis=-1).min() > 0 and np.abs(lin[:, 64].astype(int) - lin[:, 63]).max() < 25
    cov = PerspectiveView(math.pi, 0, 90, 128, 128).coverage(W)
    assert cov[:, 0].any() and cov[:, -1].any() and wrap_components(cov)[1] == 1
    # a square 90-degree view of the north pole sees every longitude above 45.5 deg and nothing below 35
    lat = np.degrees(erp.lonlat_axes(H, W)[1])
    for lon in (0.0, 1.0, -math.pi):
        cov = PerspectiveView(lon, math.pi / 2, 90, 128, 128).coverage(W)
        assert cov[lat > 45.5].all() and not cov[lat < 35].any()
    cov = PerspectiveView(0, -math.pi / 2, 90, 128, 128).coverage(W)
    assert cov[lat < -45.5].all() and not cov[lat > -35].any()


@pytest.mark.parametrize("fov", [0, -10, 180, 200, float("nan"), float("inf")])
def test_impossible_fields_of_view_are_rejected(fov):
    with pytest.raises(InvalidGeometry, match="field of view"):
        PerspectiveView(0, 0, fov, 16, 16)


@pytest.mark.parametrize("fov", [179.9, 120, 1.0, 0.01])
@pytest.mark.parametrize("lat", [0.0, math.pi / 2, -math.pi / 2])
def test_extreme_fields_of_view_give_finite_tables(fov, lat):
    img = field_erp(64, 128)
    for lon in (0.0, math.pi, -math.pi):
        view = PerspectiveView(lon, lat, fov, 33, 17)
        v = view.sample(img)  # the table builder asserts every position is finite
        assert v.shape == (17, 33, 3)
        back, cov = view.back(v, 128)
        assert back.shape == (64, 128, 3) and cov.shape == (64, 128)
        if fov >= 120:
            assert cov.sum() > 64 * 128 * 0.1
        assert not back[~cov].any()


def test_bad_arguments_are_rejected():
    with pytest.raises(NotEquirectangular):
        erp_to_perspective(np.zeros((100, 100, 3), np.uint8), lon=0, lat=0, fov_deg=90, width=8, height=8)
    with pytest.raises(NotEquirectangular):
        perspective_to_erp(np.zeros((8, 8)), lon=0, lat=0, fov_deg=90, erp_width=513)
    with pytest.raises(NotEquirectangular):
        perspective_mask_to_erp(np.zeros((8, 8), bool), lon=0, lat=0, fov_deg=90, erp_width=0)
    with pytest.raises(InvalidGeometry, match="beyond a pole"):
        PerspectiveView(0, 1.6, 90, 8, 8)
    for bad in ({"width": 0}, {"height": -1}, {"width": 2.5}, {"height": True}):
        with pytest.raises(InvalidGeometry):
            PerspectiveView(**{"lon": 0, "lat": 0, "fov_deg": 90, "width": 8, "height": 8, **bad})
    with pytest.raises(InvalidGeometry):
        PerspectiveView(float("nan"), 0, 90, 8, 8)
    with pytest.raises(InvalidGeometry, match="does not match"):
        PerspectiveView(0, 0, 90, 8, 8).back(np.zeros((8, 9)), 64)
    with pytest.raises(InvalidGeometry):
        perspective_mask_to_erp(np.zeros((8, 8, 2), bool), lon=0, lat=0, fov_deg=90, erp_width=64)


@pytest.mark.parametrize("kind", ["empty", "full", "one"])
def test_empty_full_and_one_pixel_masks(kind):
    erp_mask = {"empty": np.zeros((H, W), bool), "full": np.ones((H, W), bool),
                "one": np.pad(np.ones((1, 1), bool), ((0, H - 1), (0, W - 1)))}[kind]
    view_mask = {"empty": np.zeros((40, 50), bool), "full": np.ones((40, 50), bool),
                 "one": np.pad(np.ones((1, 1), bool), ((39, 0), (49, 0)))}[kind]
    for lon, lat in ((0.0, 0.0), (math.pi, math.pi / 2)):
        v = erp_to_perspective(erp_mask, lon=lon, lat=lat, fov_deg=90, width=50, height=40)
        assert v.dtype == bool and (v.all() if kind == "full" else v.sum() <= 40 * 50)
        if kind == "empty":
            assert not v.any()
        e = perspective_mask_to_erp(view_mask, lon=lon, lat=lat, fov_deg=90, erp_width=W)
        cov = PerspectiveView(lon, lat, 90, 50, 40).coverage(W)
        assert e.dtype == bool and not (e & ~cov).any()
        if kind == "full":
            assert np.array_equal(e, cov)
        if kind == "one":
            assert e.sum() <= 4


def test_a_tiny_view_may_cover_no_erp_pixel_centre():
    view = PerspectiveView(erp.lon_of_x(10, 128) + math.pi / 128, 0.3, 0.01, 4, 4)
    back, cov = view.back(np.ones((4, 4, 3), np.uint8), 128)
    assert back.shape == (64, 128, 3) and not back.any() and not cov.any()


def test_dtypes_channels_and_the_cache():
    clear_cache()
    img = field_erp()
    args = {"lon": 0.4, "lat": 0.2, "fov_deg": 80, "width": 48, "height": 32}
    for arr in (img, img[..., 0], img.astype(np.float32), img.astype(np.uint16), np.dstack([img, img])):
        v = erp_to_perspective(arr, **args)
        assert v.dtype == arr.dtype and v.shape == (32, 48, *arr.shape[2:])
        back, cov = perspective_to_erp(v, lon=0.4, lat=0.2, fov_deg=80, erp_width=W)
        assert back.dtype == arr.dtype and back.shape == arr.shape
    labels = (cap(0.4, 0.2, 0.2) * 7).astype(np.int32)
    assert set(np.unique(erp_to_perspective(labels, **args))) <= {0, 7}
    info = cache_info()
    erp_to_perspective(img, **args)
    assert cache_info()["hits"] == info["hits"] + 1 and cache_info()["misses"] == info["misses"]
