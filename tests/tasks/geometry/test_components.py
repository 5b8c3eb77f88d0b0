import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.geometry.components import (
    bfov,
    boundary,
    planar_bbox,
    spherical_centroid,
    wrap_bbox,
    wrap_components,
)


def seam_object(h=64, w=128):
    m = np.zeros((h, w), bool)
    m[20:30, w - 6:] = True
    m[20:30, :5] = True
    return m


def test_object_across_seam_is_one_component_with_a_wrapping_box():
    m = seam_object()
    n_plain, _ = __import__("cv2").connectedComponents(m.astype(np.uint8))
    labels, n = wrap_components(m)
    assert n_plain - 1 == 2 and n == 1
    assert wrap_bbox(m) == [122, 20, 11, 10]        # starts at 122, wraps 11 columns
    assert planar_bbox(m) == [0, 20, 128, 10]       # the COCO box spans the full width


def test_separate_regions_stay_separate_and_diagonal_seam_contact_joins():
    m = np.zeros((10, 20), bool)
    m[2, 0] = True
    m[3, 19] = True    # diagonal neighbour across the seam (8-connectivity)
    m[8, 10] = True
    _, n8 = wrap_components(m, 8)
    _, n4 = wrap_components(m, 4)
    assert n8 == 2 and n4 == 3


@pytest.mark.parametrize("mask_fn", [
    lambda h, w: np.zeros((h, w), bool),
    lambda h, w: np.ones((h, w), bool),
    lambda h, w: np.pad(np.ones((1, 1), bool), ((5, h - 6), (7, w - 8))),
])
def test_empty_full_and_one_pixel_masks(mask_fn):
    m = mask_fn(32, 64)
    labels, n = wrap_components(m)
    assert n == (0 if not m.any() else 1)
    box, b = wrap_bbox(m), bfov(m)
    if not m.any():
        assert box is None and b is None and spherical_centroid(m) is None
    else:
        assert box[2] >= 1 and b.fov_h > 0 and b.fov_v > 0
    if m.all():
        assert box == [0, 0, 64, 32] and b.fov_h == 360 and b.fov_v == 180
    boundary(m)


def test_bfov_of_a_polar_cap_is_centred_on_the_pole():
    m = np.zeros((64, 128), bool)
    m[:6] = True
    b = bfov(m)
    assert b.clat == pytest.approx(90, abs=1e-6)
    assert b.fov_v == pytest.approx(2 * 6 * 180 / 64, abs=0.5)  # cap of 16.9 deg radius


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 127), st.integers(0, 50), st.integers(2, 12), st.integers(2, 30))
def test_components_boxes_and_bfov_invariant_under_yaw_roll(shift, y, hh, ww):
    h, w = 64, 128
    m = np.zeros((h, w), bool)
    m[y:y + hh, 100:100 + ww] = True           # may run past the seam (numpy clips: no wrap here)
    m[y:y + hh, :max(0, 100 + ww - w)] = True  # ... so add the wrapped part explicitly
    r = np.roll(m, shift, axis=1)
    assert wrap_components(m)[1] == wrap_components(r)[1]
    b0, b1 = wrap_bbox(m), wrap_bbox(r)
    assert b0[1:] == b1[1:] and (b0[0] + shift) % w == b1[0]
    f0, f1 = bfov(m), bfov(r)
    assert f0.fov_h == pytest.approx(f1.fov_h, abs=1e-6) and f0.fov_v == pytest.approx(f1.fov_v, abs=1e-6)
    assert f0.clat == pytest.approx(f1.clat, abs=1e-6)
    assert ((f1.clon - f0.clon - shift * 360 / w + 180) % 360 - 180) == pytest.approx(0, abs=1e-6)


def test_boundary_does_not_see_the_seam_as_a_border():
    m = np.zeros((16, 32), bool)
    m[4:10] = True  # a full-width band
    assert not boundary(m, wrap=True)[5:9].any()
    assert boundary(m, wrap=False)[5:9, 0].all()
