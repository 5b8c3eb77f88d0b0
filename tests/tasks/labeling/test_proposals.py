"""Proposals on real 360° frames (issue 10): a bounded number of objects, the same labels
whatever the frame's yaw, and a textured surface proposed as one object."""

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from tasks.backends import build_backends
from tasks.config import PipelineConfig
from tasks.geometry.erp import row_solid_angles, spherical_iou
from tasks.geometry.rotation import rotate_erp, rotation_matrix
from tasks.labeling.overlap import pair_stats
from tasks.labeling.proposals import canonical_seam, propose_frame
from tasks.labeling.sdr import annotate_frame


def agreement(test: np.ndarray, ref: np.ndarray) -> float:
    """Area-weighted spherical IoU of two label maps: segments matched one-to-one (Hungarian on
    spherical IoU), each reference segment weighted by its solid angle, unmatched ones count 0."""
    h, w = ref.shape
    wr = row_solid_angles(h, w)
    st = pair_stats(ref.astype(np.int64), test.astype(np.int64), weights=wr)
    r_ids = sorted(set(np.unique(ref).tolist()) - {0})
    t_ids = sorted(set(np.unique(test).tolist()) - {0})
    ri, ti = {g: i for i, g in enumerate(r_ids)}, {g: i for i, g in enumerate(t_ids)}
    iou = np.zeros((len(r_ids), max(len(t_ids), 1)))
    for a, b, v in zip(st.a.tolist(), st.b.tolist(), st.iou.tolist()):
        if a in ri and b in ti:
            iou[ri[a], ti[b]] = v
    area = np.bincount(ref.ravel().astype(np.int64), weights=np.broadcast_to(wr[:, None], ref.shape).ravel())
    r, c = linear_sum_assignment(-iou)
    return float(sum(iou[i, j] * area[r_ids[i]] for i, j in zip(r, c)) / sum(area[g] for g in r_ids))


def _load(shared_data, name: str) -> np.ndarray:
    path = {"pannellum": "erp_images/pannellum_examplepano_4096x2048.jpg",
            "teacups": "360vot_samples/0030_000064.jpg",
            "drone": "360vot_samples/0115_000216.jpg"}[name]
    bgr = cv2.imread(str(shared_data / path))
    return np.ascontiguousarray(cv2.cvtColor(cv2.resize(bgr, (1024, 512), interpolation=cv2.INTER_AREA),
                                             cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def cfg():
    return PipelineConfig()


@pytest.mark.parametrize("name", ["pannellum", "teacups"])
def test_real_frame_gets_a_bounded_number_of_objects(shared_data, cfg, name):
    # before issue 10 the tiles proposed 107 / 260 entities on these frames (59 / 160 objects,
    # nearly all `unknown`); every entity becomes a track that propagate, refine and QA follow
    rgb = _load(shared_data, name)
    props = propose_frame(rgb, cfg, build_backends(cfg))
    assert 2 <= props.entity.max() <= cfg.propose.max_objects
    objs = annotate_frame(rgb, cfg, build_backends(cfg))
    assert 1 <= len(objs.objects) <= cfg.propose.max_objects


def test_canonical_seam_moves_with_the_content(shared_data):
    rgb = _load(shared_data, "drone")
    s0 = canonical_seam(rgb)
    for shift in (4, 300, 512, 1020):
        assert canonical_seam(np.roll(rgb, shift, axis=1)) == (s0 + shift) % 1024


@pytest.mark.parametrize("shift", [512, 300])
def test_rolled_real_panorama_gets_the_rolled_labels(shared_data, cfg, shift):
    # the tiles are anchored to the seam: the same panorama rolled by W/2 agreed at 0.82 (0.65-0.95
    # over the real frames); the proposals are now made in a frame whose seam the content chooses
    rgb = _load(shared_data, "pannellum")
    be = build_backends(cfg)
    ref = np.roll(annotate_frame(rgb, cfg, be).idmap, shift, axis=1)
    got = annotate_frame(np.roll(rgb, shift, axis=1), cfg, be).idmap
    assert agreement(got, ref) >= 0.99


def test_rotated_real_panorama_keeps_its_labels(shared_data, cfg):
    # a 3D rotation resamples every pixel, so the labels may differ at their outlines and where
    # two regions are nearly alike; measured 0.96 (tiles: 0.79) when 56% of the sphere (the big
    # regions no voter named) was dropped and not compared; with them labeled (voter-agreed
    # parts by class, the rest unknown, issue 10) the whole sphere is compared: 0.88
    rgb = _load(shared_data, "pannellum")
    be = build_backends(cfg)
    R = rotation_matrix(np.radians(20), np.radians(10), np.radians(5))
    ref = rotate_erp(annotate_frame(rgb, cfg, be).idmap, R, interpolation="nearest")
    got = annotate_frame(rotate_erp(rgb, R, interpolation="linear"), cfg, be).idmap
    assert agreement(got, ref) >= 0.85


def test_textured_multicoloured_region_is_one_object(shared_data, cfg):
    """A disc of real foliage and rock (many colours) on a plain backdrop is one object, not a
    track per colour patch."""
    rgb = _load(shared_data, "pannellum")
    patch = rgb[300:400, 100:400]          # the forested slope below the horizon
    frame = np.full_like(rgb, (200, 200, 205))
    yy, xx = np.mgrid[0:512, 0:1024]
    disc = (yy - 300) ** 2 / 50 ** 2 + (xx - 600) ** 2 / 100 ** 2 <= 1.0   # 3% of the sphere
    frame[disc] = np.tile(patch, (6, 4, 1))[:512, :1024][disc]
    assert len(np.unique(frame[disc].reshape(-1, 3) // 32, axis=0)) > 10   # it is multi-coloured
    idmap = annotate_frame(frame, cfg, build_backends(cfg)).idmap
    ids, counts = np.unique(idmap[disc], return_counts=True)
    best = ids[np.argmax(counts)]
    assert best != 0 and spherical_iou(disc, idmap == best) > 0.85
    big = counts[ids != 0] > 0.05 * disc.sum()
    assert big.sum() == 1                  # no second object holds a real part of it


@pytest.mark.parametrize("name", ["pannellum", "teacups", "drone"])
def test_canonical_seam_is_stable_under_jpeg_noise_of_a_rolled_frame(shared_data, name):
    # a rolled video is re-encoded: the seam must follow the content, not jump to another
    # near-quiet meridian (the box-smoothed argmin moved 16-56 columns of 1024 here; the first
    # harmonic's trough moves at most 5 at quality 50)
    from tasks.video.framestore import decode_jpeg, encode_jpeg

    rgb = _load(shared_data, name)
    s0 = canonical_seam(rgb)
    for shift in (300, 512):
        for q in (90, 50):
            s1 = canonical_seam(decode_jpeg(encode_jpeg(np.roll(rgb, shift, axis=1), q)))
            d = (s1 - s0 - shift) % 1024
            assert min(d, 1024 - d) <= 8, (shift, q, s0, s1)
