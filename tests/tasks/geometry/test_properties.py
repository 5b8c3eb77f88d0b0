"""Property tests: what sphere rotations and yaw rolls must leave alone.

Masks are unions of spherical caps anywhere on the sphere (across the seam, over a pole), so the
properties are exercised where ERP geometry is hardest. A yaw roll by whole columns is exact, so
everything measured on the sphere must be identical after it. A general rotation resamples the
mask with nearest neighbours, so measures hold up to the outline: one pixel of slack per unit of
perimeter.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.geometry import erp
from tasks.geometry.components import bfov, spherical_centroid, wrap_bbox, wrap_components
from tasks.geometry.perspective import PerspectiveView
from tasks.geometry.rotation import rotate_erp, rotate_lonlat, rotation_matrix

H, W = 64, 128
PX = math.pi / H  # the side of an equatorial pixel (rad); no pixel is taller or wider

lon_s = st.floats(-math.pi, math.pi, allow_nan=False)
lat_s = st.floats(-math.pi / 2, math.pi / 2, allow_nan=False)
caps_s = st.lists(st.tuples(lon_s, lat_s, st.floats(0.12, 0.9)), min_size=1, max_size=3)
rot_s = st.tuples(st.floats(-math.pi, math.pi), st.floats(-math.pi / 2, math.pi / 2), st.floats(-math.pi, math.pi))


def caps_mask(caps) -> np.ndarray:
    v = erp.unit_vectors(H, W)
    m = np.zeros((H, W), bool)
    for lon, lat, r in caps:
        m |= v @ erp.lonlat_to_vec(lon, lat).astype(np.float32) >= math.cos(r)
    return m


def perimeter_bound(caps) -> float:
    return sum(2 * math.pi * math.sin(min(r, math.pi / 2)) for _, _, r in caps)


@settings(max_examples=40, deadline=None)
@given(caps_s, rot_s)
def test_spherical_area_of_a_rotated_mask_is_preserved(caps, angles):
    m = caps_mask(caps)
    r = rotate_erp(m, rotation_matrix(*angles))
    # nearest resampling moves the outline by at most half a pixel either way
    slack = perimeter_bound(caps) * PX * 0.5 + 4 * PX * PX
    assert abs(erp.spherical_area(r) - erp.spherical_area(m)) <= slack
    if len(caps) == 1:  # and both are the cap's true area up to the same slack
        true_area = 2 * math.pi * (1 - math.cos(caps[0][2]))
        assert abs(erp.spherical_area(r) - true_area) <= slack + 0.5 * perimeter_bound(caps) * PX


@settings(max_examples=30, deadline=None)
@given(caps_s, caps_s, rot_s)
def test_spherical_iou_survives_a_rotation(caps_a, caps_b, angles):
    a, b = caps_mask(caps_a), caps_mask(caps_b)
    R = rotation_matrix(*angles)
    ra, rb = rotate_erp(a, R), rotate_erp(b, R)
    union = erp.spherical_area(a | b)
    slack = (perimeter_bound(caps_a) + perimeter_bound(caps_b)) * PX * 1.5 / union
    assert abs(erp.spherical_iou(ra, rb) - erp.spherical_iou(a, b)) <= slack


@settings(max_examples=30, deadline=None)
@given(caps_s, rot_s)
def test_the_centroid_moves_with_the_rotation(caps, angles):
    m = caps_mask(caps)
    c = spherical_centroid(m)
    if c is None:
        return
    v = erp.row_solid_angles(H, W)[:, None] * m
    mean_len = np.linalg.norm((erp.unit_vectors(H, W) * v[..., None]).sum((0, 1))) / v.sum()
    if mean_len < 0.2:  # a mask spread around the sphere has no stable centre
        return
    R = rotation_matrix(*angles)
    c_rot = spherical_centroid(rotate_erp(m, R))
    expect = rotate_lonlat(R, *c)
    angle = math.acos(np.clip(erp.lonlat_to_vec(*c_rot) @ erp.lonlat_to_vec(*expect), -1, 1))
    assert angle <= 3 * PX / mean_len


@settings(max_examples=30, deadline=None)
@given(caps_s, caps_s, st.integers(0, W - 1))
def test_everything_measured_on_the_sphere_is_invariant_under_yaw_roll(caps_a, caps_b, shift):
    a, b = caps_mask(caps_a), caps_mask(caps_b)
    ra, rb = erp.roll(a, shift), erp.roll(b, shift)
    # a whole-column yaw rotation through the general machinery is the same roll
    assert np.array_equal(rotate_erp(a, rotation_matrix(2 * math.pi * shift / W, 0)), ra)
    assert erp.spherical_area(ra) == pytest.approx(erp.spherical_area(a), abs=1e-12)
    assert erp.spherical_iou(ra, rb) == pytest.approx(erp.spherical_iou(a, b), abs=1e-12)
    la, na = wrap_components(a)
    lr, nr = wrap_components(ra)
    assert na == nr
    assert sorted(np.bincount(la.ravel())[1:]) == sorted(np.bincount(lr.ravel())[1:])
    box, rbox = wrap_bbox(a), wrap_bbox(ra)
    assert rbox[1:] == box[1:] and (box[0] + shift) % W == rbox[0] or box[2] == W
    f, rf = bfov(a), bfov(ra)
    assert rf.fov_h == pytest.approx(f.fov_h, abs=1e-6) and rf.fov_v == pytest.approx(f.fov_v, abs=1e-6)
    assert rf.clat == pytest.approx(f.clat, abs=1e-6)
    dlon = (rf.clon - f.clon - shift * 360 / W + 180) % 360 - 180
    assert dlon == pytest.approx(0, abs=1e-6) or abs(f.clat) > 90 - 1e-6


@settings(max_examples=25, deadline=None)
@given(lon_s, st.floats(-1.4, 1.4), st.floats(20, 150), st.integers(0, W - 1))
def test_a_view_follows_a_yaw_roll(lon, lat, fov, shift):
    """A view of the rolled frame at lon + shift is the view of the frame at lon."""
    img = np.random.default_rng(3).integers(0, 256, (H, W), dtype=np.uint8)
    dlon = 2 * math.pi * shift / W
    a = PerspectiveView(lon, lat, fov, 24, 16).sample(img, "nearest")
    b = PerspectiveView(lon + dlon, lat, fov, 24, 16).sample(erp.roll(img, shift), "nearest")
    assert (a != b).mean() <= 0.05  # only ties at exactly half a pixel can round apart
    cov_a = PerspectiveView(lon, lat, fov, 24, 16).coverage(W)
    cov_b = PerspectiveView(lon + dlon, lat, fov, 24, 16).coverage(W)
    assert abs(erp.spherical_area(cov_a) - erp.spherical_area(cov_b)) <= 2 * math.radians(fov) * 2 * PX


@settings(max_examples=40, deadline=None)
@given(lon_s, lat_s, st.floats(1, 179), st.integers(1, 40), st.integers(1, 40), st.floats(-math.pi, math.pi))
def test_coverage_is_exactly_the_frustum(lon, lat, fov, w, h, roll):
    """The way back only examines the footprint of the view; it must never cut a covered pixel."""
    view = PerspectiveView(lon, lat, fov, w, h, roll)
    cov = view.coverage(W)
    plon, plat = erp.lonlat_axes(H, W)
    x, y, front = view.lonlat_to_pixel(plon[None, :], plat[:, None])
    with np.errstate(invalid="ignore"):
        dist = np.minimum.reduce([np.abs(x + 0.5), np.abs(x - (w - 0.5)), np.abs(y + 0.5), np.abs(y - (h - 0.5))])
        inside = front & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    on_edge = front & (dist < 1e-3)  # float32 tables against this float64 check
    assert not ((cov != inside) & ~on_edge).any()
