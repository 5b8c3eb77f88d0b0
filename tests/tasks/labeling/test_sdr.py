"""The SDR of the tracking pass's refreshes under camera motion (issue 10): made in frame 0's
orientation, with the previous keyframe's entities as a prior, so a still scene seen through a
moving camera is labeled the way frame 0 was."""

import cv2
import numpy as np
import pytest

from tasks.backends import build_backends
from tasks.config import PipelineConfig
from tasks.geometry.rotation import rotate_erp, rotation_matrix
from tasks.labeling.proposals import propose_frame
from tasks.labeling.sdr import Annotator, annotate_frame
from tasks.metrics.consistency import agreement
from tasks.video.framestore import decode_jpeg, encode_jpeg

W = 512


@pytest.fixture(scope="module")
def cfg():
    return PipelineConfig().with_overrides({"propose.work_width": W, "propose.slic_width": W,
                                            "propose.sphere_superpixels": 800})


@pytest.fixture(scope="module")
def scene(shared_data, cfg):
    """The teacup ride (360VOT 0030) and the same still scene after a handheld turn (yaw, pitch
    and roll), re-encoded as a video frame is; frame 0's labels turned by the same rotation."""
    bgr = cv2.imread(str(shared_data / "360vot_samples/0030_000064.jpg"))
    rgb = np.ascontiguousarray(cv2.cvtColor(cv2.resize(bgr, (W, W // 2), interpolation=cv2.INTER_AREA),
                                            cv2.COLOR_BGR2RGB))
    R = rotation_matrix(np.radians(25), np.radians(9), np.radians(-11)).T
    moved = decode_jpeg(encode_jpeg(rotate_erp(rgb, R, interpolation="linear"), 85))
    be = build_backends(cfg)
    first = propose_frame(rgb, cfg, be).entity
    ref = rotate_erp(annotate_frame(rgb, cfg, be).idmap, R, interpolation="nearest")
    return rgb, moved, R, be, first, ref


def _agree(ref, got) -> float:
    return agreement([ref], [got])["iou_weighted"]


def test_refresh_of_a_turned_still_scene_keeps_frame_0s_labels(cfg, scene):
    rgb, moved, R, be, first, ref = scene
    plain = annotate_frame(moved, cfg, be).idmap           # what a refresh did before issue 10
    got = Annotator(cfg, first=first)(moved, be, orientation=R)
    assert got.idmap.shape == moved.shape[:2] and got.stats["derotated_deg"] > 20
    assert got.entity is not None and got.entity.shape == first.shape
    assert set(np.unique(got.idmap).tolist()) - {0} == set(got.objects)
    ours, before = _agree(ref, got.idmap), _agree(ref, plain)
    # measured 0.90 against 0.65 for a refresh in the frame's own orientation without a prior
    assert ours >= 0.85 and ours > before + 0.1, (ours, before)


def test_a_cut_forgets_the_prior_and_derotate_off_ignores_the_orientation(cfg, scene):
    rgb, moved, R, be, first, _ = scene
    ann = Annotator(cfg, first=first)
    fresh = ann(moved, be, orientation=R, new_scene=True)   # a new scene: nothing carried over
    assert np.array_equal(fresh.idmap, annotate_frame(moved, cfg, be, orientation=R).idmap)
    off = cfg.with_overrides({"propose.derotate": False})
    assert np.array_equal(annotate_frame(moved, off, be, orientation=R).idmap,
                          annotate_frame(moved, off, be).idmap)


def test_an_object_that_moved_leaves_no_ghost_of_its_old_place(cfg, scene):
    """A prior made before a ball rolled away: the ball is cut where it is now, and where it was
    is the floor again (the hysteresis does not keep a region shaped like the ball there)."""
    rgb, _, _, be, _, _ = scene
    yy, xx = np.mgrid[0:W // 2, 0:W]
    was = (yy - 200) ** 2 + (xx - 120) ** 2 <= 16 ** 2
    now = (yy - 200) ** 2 + (xx - 330) ** 2 <= 16 ** 2
    before, after = rgb.copy(), rgb.copy()
    before[was] = (230, 30, 30)
    after[now] = (230, 30, 30)
    ann = Annotator(cfg, first=propose_frame(before, cfg, be).entity)
    got = ann(after, be).entity
    ids, counts = np.unique(got[now], return_counts=True)
    ball = got == ids[np.argmax(counts)]
    assert (ball & now).sum() / (ball | now).sum() > 0.8
    ids, counts = np.unique(got[was], return_counts=True)
    there = got == ids[np.argmax(counts)]
    assert there.sum() > 4 * was.sum()        # the old place belongs to a larger region
