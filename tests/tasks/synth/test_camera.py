"""Camera paths and re-shooting a still ERP image through them (issue 10 §1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.geometry.erp import unit_vectors
from tasks.geometry.rotation import rotate_erp, rotation_matrix
from tasks.synth.camera import CAMERAS, camera_path, render_still, rotate_labels


def _angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(R) - 1) / 2, -1, 1))))


@pytest.mark.parametrize("kind", CAMERAS)
def test_path_shapes_rotations_and_determinism(kind):
    p = camera_path(kind, 60, 10.0, seed=3)
    assert p.rotations.shape == (60, 3, 3) and p.angles.shape == (60, 3)
    assert np.allclose(p.rotations[0], np.eye(3))
    for R in p.rotations:
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) == pytest.approx(1.0)
    # the content rotation is the inverse of the camera orientation given by the angles
    yaw, pitch, roll = np.radians(p.angles[17])
    assert np.allclose(p.rotations[17], rotation_matrix(yaw, pitch, roll).T)
    q = camera_path(kind, 60, 10.0, seed=3)
    assert np.array_equal(p.rotations, q.rotations)


def test_paths_move_as_described():
    assert np.allclose(camera_path("still", 30, 10.0).rotations, np.eye(3))
    pan = camera_path("pan", 31, 10.0, seed=1)
    steps = pan.step_deg()
    assert 1.5 <= steps.mean() <= 3.0 and np.allclose(steps, steps[0], atol=1e-6)  # 15..30 deg/s, steady
    assert np.allclose(pan.angles[:, 1:], 0)
    for seed in range(5):
        hh = camera_path("handheld", 60, 10.0, seed=seed)
        tilt = np.abs(hh.angles[:, 1:]).max(axis=0)
        assert (tilt >= 7.9).all() and (tilt <= 12.0 + 1e-9).all()  # pitch and roll reach ~+-8..12 deg
        assert hh.step_deg().max() < 4.0  # smooth: a few degrees per frame at 10 fps at most
        car = camera_path("vehicle", 60, 10.0, seed=seed)
        assert abs(car.angles[-1, 0]) > 20 or np.abs(car.angles[:, 0]).max() > 40  # it turns
        assert np.abs(car.angles[:, 1]).max() <= 7.0 and car.step_deg().max() < 6.0
    assert not np.array_equal(camera_path("handheld", 60, 10.0, 0).rotations,
                              camera_path("handheld", 60, 10.0, 1).rotations)


@pytest.mark.parametrize("bad", [dict(kind="drone"), dict(n_frames=0), dict(fps=0.0), dict(fps=float("nan")),
                                 dict(seed=-1)])
def test_bad_arguments(bad):
    args = dict(kind="handheld", n_frames=10, fps=10.0, seed=0) | bad
    with pytest.raises(ValueError):
        camera_path(**args)


def _smooth_sphere_image(h: int, w: int) -> np.ndarray:
    """A picture that is a smooth function of the direction: continuous over the seam and poles."""
    v = unit_vectors(h, w).astype(np.float64)
    rgb = np.stack([np.sin(3 * v[..., 0] + 1), np.cos(2 * v[..., 1] - v[..., 2]), np.sin(4 * v[..., 2])], -1)
    return np.clip(np.rint(127.5 + 110 * rgb), 0, 255).astype(np.uint8)


def test_render_is_the_rotated_still_and_rotating_back_gives_it_again():
    img = _smooth_sphere_image(128, 256)
    path = camera_path("handheld", 12, 10.0, seed=2)
    frames = list(render_still(img, path))
    assert len(frames) == 12 and frames[0].shape == img.shape
    assert np.abs(frames[0].astype(int) - img).max() <= 1
    back = rotate_erp(frames[-1], path.rotations[-1].T)
    inner = slice(8, -8)  # rows away from the poles, where bilinear twice is smooth
    assert np.abs(back[inner].astype(int) - img[inner]).mean() < 2.0
    # seam continuity: the first and last columns differ like any two neighbouring columns
    f = frames[7].astype(int)
    seam = np.abs(f[:, 0] - f[:, -1]).mean()
    inside = np.abs(f[:, 1:] - f[:, :-1]).mean()
    assert seam < 3 * inside + 1


def test_render_supersamples_a_larger_still():
    img = _smooth_sphere_image(256, 512)
    path = camera_path("pan", 3, 10.0, seed=0)
    frames = list(render_still(img, path, width=256))
    assert frames[0].shape == (128, 256, 3)
    direct = list(render_still(_smooth_sphere_image(128, 256), path))
    assert np.abs(frames[2].astype(int) - direct[2]).mean() < 3.0
    with pytest.raises(ValueError):
        next(render_still(img, path, width=255))


def test_ground_truth_is_the_frame0_mask_rotated_and_rotates_back():
    h, w = 128, 256
    ids = np.zeros((h, w), np.uint16)
    ids[60:70, 250:256] = 3
    ids[60:70, 0:8] = 3  # an object across the seam
    ids[2:10, :] = 4  # a polar cap
    ids[80:100, 100:130] = 5
    path = camera_path("vehicle", 20, 10.0, seed=1)
    gt = list(rotate_labels(ids, path))
    assert np.array_equal(gt[0], ids) and gt[5].dtype == np.uint16
    assert set(np.unique(gt[-1]).tolist()) <= {0, 3, 4, 5}
    back = rotate_erp(gt[-1], path.rotations[-1].T, interpolation="nearest")
    for k in (3, 4, 5):
        a, b = ids == k, back == k
        assert (a & b).sum() / (a | b).sum() > 0.8  # equal up to a one-pixel band along the outline
    # the mask moves with the picture: paint the object into the still and re-shoot it
    img = np.zeros((h, w, 3), np.uint8)
    img[ids == 5] = 255
    frame = list(render_still(img, path))[-1]
    obj = gt[-1] == 5
    bright = frame[..., 0] > 127
    assert (obj & bright).sum() / (obj | bright).sum() > 0.85


def test_real_panorama_re_shot_and_rotated_back(shared_data):
    import cv2

    bgr = cv2.imread(str(shared_data / "erp_images" / "pannellum_examplepano_4096x2048.jpg"))
    still = cv2.cvtColor(cv2.resize(bgr, (1024, 512), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    path = camera_path("vehicle", 15, 10.0, seed=4)
    frames = list(render_still(still, path, width=512))
    ref = cv2.resize(still, (512, 256), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(frames[0].astype(int) - ref).mean() < 1.0  # frame 0 is the still itself
    moved = frames[-1].astype(int)
    assert np.abs(moved - ref).mean() > 10  # the camera really turned
    back = rotate_erp(frames[-1], path.rotations[-1].T).astype(int)
    rows = slice(20, -20)
    assert np.abs(back[rows] - ref[rows]).mean() < 6  # the same picture, up to two resamplings
