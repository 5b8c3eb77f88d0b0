"""The boundary and region measures against independent references.

The planar reference below is davis2017-evaluation's ``f_measure`` written out literally (with
scikit-image's disk), so any drift of the point-form F from the published definition shows up
here; the spherical one is a brute-force great-circle comparison of every boundary pixel pair.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.morphology import disk as sk_disk

from tasks.geometry.erp import lonlat_axes, row_solid_angles
from tasks.metrics.davis import (
    BoundaryScorer,
    bound_pixels,
    disk,
    f_measure,
    iou,
    label_boundaries,
    seg2bmap,
)


# -- independent references ---------------------------------------------------------------------
def ref_seg2bmap(seg):
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def ref_f_measure(foreground_mask, gt_mask, bound_th=0.008):
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    fg_boundary = ref_seg2bmap(foreground_mask)
    gt_boundary = ref_seg2bmap(gt_mask)
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), sk_disk(bound_pix).astype(np.uint8))
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), sk_disk(bound_pix).astype(np.uint8))
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg = np.sum(fg_boundary)
    n_gt = np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_f_sphere(fg, gt, radius):
    """Seam-wrapped seg2bmap, all-pairs great-circle distances, solid-angle weights."""
    h, w = fg.shape

    def wrapped_bmap(m):
        return ref_seg2bmap(np.concatenate([m, m[:, :1]], axis=1))[:, :w]

    bf, bg = wrapped_bmap(fg), wrapped_bmap(gt)
    lon, lat = lonlat_axes(h, w)
    wr = row_solid_angles(h, w)
    yf, xf = np.nonzero(bf)
    yg, xg = np.nonzero(bg)
    if yf.size == 0 or yg.size == 0:
        return {(0, 0): 1.0}.get((yf.size, yg.size), 0.0)
    # haversine between every pair
    dlat = lat[yf][:, None] - lat[yg][None, :]
    dlon = lon[xf][:, None] - lon[xg][None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[yf])[:, None] * np.cos(lat[yg])[None, :] * np.sin(dlon / 2) ** 2
    d = 2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    close = d <= radius * np.pi / h + 1e-9
    wf, wg = wr[yf], wr[yg]
    p = (wf * close.any(axis=1)).sum() / wf.sum()
    r = (wg * close.any(axis=0)).sum() / wg.sum()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def blob_masks(rng, h, w, n):
    """Random smooth-ish masks: thresholded blurred noise, some touching the borders."""
    out = []
    for _ in range(n):
        noise = rng.random((h // 4 + 1, w // 4 + 1)).astype(np.float32)
        big = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
        out.append(big > rng.uniform(0.45, 0.7))
    return out


# -- tests ----------------------------------------------------------------------------------------
def test_disk_and_radius_match_davis():
    for r in (1, 2, 5, 10):
        assert np.array_equal(disk(r), sk_disk(r).astype(np.uint8))
    assert bound_pixels(64, 128) == 2  # ceil(0.008 * 143.1)
    assert bound_pixels(512, 1024) == 10
    assert bound_pixels(512, 1024, 3) == 3


def test_seg2bmap_port_is_literal():
    rng = np.random.default_rng(1)
    for m in blob_masks(rng, 32, 64, 6) + [np.ones((8, 16), bool), np.zeros((8, 16), bool)]:
        assert np.array_equal(seg2bmap(m), ref_seg2bmap(m))


def test_label_boundaries_equal_seg2bmap_of_every_label():
    rng = np.random.default_rng(2)
    h, w = 32, 64
    labels = np.zeros((h, w), np.int32)
    for k, m in enumerate(blob_masks(rng, h, w, 5), start=1):
        labels[m] = k
    planar, wrapped = label_boundaries(labels)
    for k in range(1, 6):
        m = labels == k
        want = np.flatnonzero(ref_seg2bmap(m))
        assert np.array_equal(planar.get(k, np.zeros(0, np.int64)), want)
        want_w = np.flatnonzero(ref_seg2bmap(np.concatenate([m, m[:, :1]], axis=1))[:, :w].ravel())
        assert np.array_equal(wrapped.get(k, np.zeros(0, np.int64)), want_w)


def test_planar_f_agrees_with_davis_reference():
    rng = np.random.default_rng(3)
    h, w = 64, 128
    scorer = BoundaryScorer(h, w)
    masks = blob_masks(rng, h, w, 8)
    rect = np.zeros((h, w), bool)
    rect[20:40, 30:70] = True
    cases = [
        (rect, rect),
        (rect, np.roll(rect, 3, axis=1)),  # beyond the 2-px tolerance on the vertical edges
        (rect, np.roll(rect, 1, axis=0)),  # within it everywhere
        (rect, np.zeros_like(rect)),
        (np.zeros_like(rect), rect),
        (np.zeros_like(rect), np.zeros_like(rect)),
        (np.ones_like(rect), rect),  # a full mask has no boundary at all
        *zip(masks[:4], masks[4:]),
        *((m, cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)) for m in masks[:3]),
    ]
    for fg, gt in cases:
        want = ref_f_measure(fg, gt)
        assert f_measure(fg, gt) == pytest.approx(want, abs=1e-12)
        fg_b = np.flatnonzero(ref_seg2bmap(fg))
        gt_b = np.flatnonzero(ref_seg2bmap(gt))
        assert scorer.planar(fg_b, gt_b) == pytest.approx(want, abs=1e-12)
    # the cases are not all trivial
    values = {round(ref_f_measure(fg, gt), 3) for fg, gt in cases}
    assert len(values) >= 5


def test_sphere_f_agrees_with_brute_force_great_circle():
    rng = np.random.default_rng(4)
    h, w = 24, 48
    for radius in (1, 2, 3):
        scorer = BoundaryScorer(h, w, bound_th=radius)
        masks = blob_masks(rng, h, w, 6)
        for fg, gt in zip(masks[:3], masks[3:]):
            _, fg_w = label_boundaries(fg.astype(np.int32))
            _, gt_w = label_boundaries(gt.astype(np.int32))
            got = scorer.sphere(fg_w.get(1), gt_w.get(1))
            assert got == pytest.approx(ref_f_sphere(fg, gt, radius), abs=1e-12)


def test_sphere_tolerance_widens_towards_the_poles():
    """A horizontal offset that misses at the equator is within the angle near a pole."""
    h, w = 64, 128
    scorer = BoundaryScorer(h, w)  # 2 px
    row = {"equator": 32, "pole": 2}
    for where, y in row.items():
        gt = np.array([y * w + 60])
        fg = np.array([y * w + 64])  # 4 px to the right
        f = scorer.sphere(fg, gt)
        assert f == (0.0 if where == "equator" else 1.0)
        assert scorer.planar(fg, gt) == 0.0


def test_weighted_iou():
    h, w = 64, 128
    wr = row_solid_angles(h, w)
    a = np.zeros((h, w), bool)
    b = np.zeros((h, w), bool)
    a[0:2, 0:10] = True
    b[0:2, 0:5] = True
    b[30, 0:5] = True
    assert iou(a, b) == pytest.approx(10 / 25)
    want = (10 * wr[0:2].sum() / 2) / (20 * wr[0:2].sum() / 2 + 5 * wr[30])
    assert iou(a, b, wr) == pytest.approx(want)
    assert iou(np.zeros((4, 8)), np.zeros((4, 8))) == 1.0
