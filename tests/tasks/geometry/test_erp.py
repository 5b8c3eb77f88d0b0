import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.errors import NotEquirectangular
from tasks.geometry import erp


def test_convention_and_inverse():
    h, w = 64, 128
    assert erp.lon_of_x(w / 2 - 0.5, w) == pytest.approx(0.0)
    assert erp.lat_of_y(h / 2 - 0.5, h) == pytest.approx(0.0)
    xs = np.arange(w)
    assert np.allclose(erp.x_of_lon(erp.lon_of_x(xs, w), w), xs)
    ys = np.arange(h)
    assert np.allclose(erp.y_of_lat(erp.lat_of_y(ys, h), h), ys)
    v = erp.unit_vectors(h, w)
    assert v.shape == (h, w, 3) and np.allclose(np.linalg.norm(v, axis=-1), 1, atol=1e-6)
    assert np.isfinite(v).all()


def test_solid_angles_sum_to_sphere_and_poles_are_small():
    wr = erp.row_solid_angles(512, 1024)
    assert wr.sum() * 1024 == pytest.approx(4 * np.pi)
    assert wr[0] < wr[256] / 100  # a pole pixel covers ~ 1/300 of an equator pixel at this size


def test_spherical_area_iou_edge_cases():
    h, w = 32, 64
    empty, full = np.zeros((h, w), bool), np.ones((h, w), bool)
    one = empty.copy()
    one[0, 0] = True
    assert erp.spherical_area(empty) == 0 and erp.spherical_fraction(full) == pytest.approx(1)
    assert erp.spherical_iou(empty, empty) == 1.0 and erp.spherical_iou(full, empty) == 0.0
    assert 0 < erp.spherical_area(one) < 4 * np.pi / (h * w)


@pytest.mark.parametrize("shape", [(100, 100), (10, 21), (0, 0)])
def test_non_erp_frames_are_rejected(shape):
    with pytest.raises(NotEquirectangular, match="not 2:1"):
        erp.check_erp(np.zeros(shape))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 127), st.integers(1, 20), st.integers(0, 63), st.integers(0, 40))
def test_spherical_area_and_iou_invariant_under_yaw_roll(shift, r, y0, x0):
    h, w = 64, 128
    a = np.zeros((h, w), bool)
    a[y0:y0 + r, x0:x0 + 3 * r] = True
    b = np.roll(a, 5, axis=1) | np.roll(a, 2, axis=0)
    assert erp.spherical_area(erp.roll(a, shift)) == pytest.approx(erp.spherical_area(a))
    assert erp.spherical_iou(erp.roll(a, shift), erp.roll(b, shift)) == pytest.approx(erp.spherical_iou(a, b))


def test_wrap_pad_and_unwrap():
    img = np.arange(4 * 8).reshape(4, 8)
    p = erp.wrap_pad(img, 2)
    assert (p[:, :2] == img[:, -2:]).all() and (p[:, -2:] == img[:, :2]).all()
    assert (erp.unwrap_pad(p, 2) == img).all()
    m = np.zeros((4, 12), bool)
    m[0, 0] = True   # padded copy of column 6
    m[1, 11] = True  # padded copy of column 1
    out = erp.unwrap_pad(m, 2, reduce="or")
    assert out[0, 6] and out[1, 1] and out.sum() == 2
