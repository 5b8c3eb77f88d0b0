"""The plain baseline: wrap-aware DIS backward flow and masks warped along it (issue 10 §1.4)."""

import cv2
import numpy as np
import pytest

from tasks.backends.flow import build_propagator
from tasks.backends.protocols import Propagator
from tasks.backends.warp import WarpPropagator, backward_flow, warp_labels, warp_mask
from tasks.config import PipelineConfig
from tasks.geometry.erp import spherical_iou
from tasks.geometry.rotation import rotate_erp, rotation_matrix


@pytest.fixture(scope="module")
def pano(shared_data):
    im = cv2.imread(str(shared_data / "erp_images" / "pannellum_examplepano_4096x2048.jpg"))
    return cv2.resize(cv2.cvtColor(im, cv2.COLOR_BGR2RGB), (256, 128), interpolation=cv2.INTER_AREA)


def test_backward_flow_of_a_yaw_roll_points_back_across_the_seam(pano):
    cur = np.roll(pano, 6, axis=1)            # content moved 6 px right: it was 6 px left
    back = backward_flow(pano, cur, flow_width=256)
    assert back.shape == (128, 256, 2)
    rows = slice(20, 108)                      # textured rows (the poles are flat sky/ground)
    assert np.median(back[rows, :, 0]) == pytest.approx(-6, abs=0.3)
    assert np.median(back[rows, :4, 0]) == pytest.approx(-6, abs=0.5)   # columns that came over the seam


def test_a_mask_crossing_the_seam_is_warped_whole(pano):
    mask = np.zeros((128, 256), bool)
    mask[50:70, 248:] = mask[50:70, :10] = True
    cur = np.roll(pano, 5, axis=1)
    back = backward_flow(pano, cur, flow_width=256)
    want = np.roll(mask, 5, axis=1)
    assert spherical_iou(warp_mask(mask, back), want) > 0.9
    labels = warp_labels(mask.astype(np.uint16) * 7, back)
    assert spherical_iou(labels == 7, want) > 0.9 and set(np.unique(labels).tolist()) <= {0, 7}


def test_warp_propagator_follows_a_camera_rotation_and_is_selectable(pano):
    config = PipelineConfig().with_overrides({"propagate.backend": "warp", "propagate.flow_width": 256})
    p = build_propagator(config, 256)
    assert isinstance(p, WarpPropagator) and isinstance(p, Propagator) and p.hidden_objects((128, 256)) == {}
    ids = np.zeros((128, 256), np.uint16)
    ids[64:84, 60:90] = 3       # rocks in the foreground (the sky above has no texture to follow)
    ids[70:95, 140:180] = 5
    p.reset(pano, ids)
    d = np.pi / 180
    for t in range(1, 11):
        R = rotation_matrix(1.5 * t * d, 0.6 * t * d, 0.4 * t * d).T
        out = p.step(rotate_erp(pano, R))
    truth = rotate_erp(ids, R)
    for k in (3, 5):
        # nearest warps round every frame: the baseline drifts (the flow propagator does not)
        assert spherical_iou(out == k, truth == k) > 0.6
    p.forget([3])
    assert not (p.step(rotate_erp(pano, R)) == 3).any()


def test_step_before_reset_and_mismatched_sizes_are_errors():
    p = WarpPropagator(64)
    with pytest.raises(RuntimeError):
        p.step(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError):
        p.reset(np.zeros((32, 64, 3), np.uint8), np.zeros((10, 10), np.uint16))
