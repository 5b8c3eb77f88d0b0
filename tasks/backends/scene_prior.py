"""CPU panoptic voters: background classes from colour, texture and latitude.

Without a learned model a CPU can still name the large background regions of an outdoor 360°
frame: sky is bright/blue and above the horizon, grass is green below it, and so on. Latitude is
what an ERP frame gives for free (and what perspective-trained models lack). Two voters use
this prior with different algorithms so that the cross-model vote of the method [M §1.2(c)] is
real: a per-pixel classifier and a clustering-based region classifier. They answer in different
label spaces (the master vocabulary and COCO-panoptic names) so the vocabulary maps are used as
they are with the production OneFormer voters. Regions they cannot name (objects) get no class.

Both are seam-aware (components wrap around the left/right border), so they run on the whole
ERP frame rather than on tiles.
"""

from __future__ import annotations

import cv2
import numpy as np

from tasks.backends.protocols import LabeledSegments
from tasks.geometry.components import wrap_components
from tasks.geometry.erp import lonlat_axes, row_solid_angles

# kinds -> names in each voter's label space
_MASTER = {"sky": "sky", "tree": "tree", "grass": "grass", "water": "water", "dirt": "dirt", "snow": "snow"}
_COCO = {"sky": "sky-other-merged", "tree": "tree-merged", "grass": "grass-merged", "water": "water-other",
         "dirt": "dirt-merged", "snow": "snow"}
_KINDS = ["sky", "tree", "grass", "water", "dirt", "snow"]
# Ground-like stuff comes in expanses: a white or brown blob smaller than this share of the
# sphere is far more likely an object than a snowfield or a patch of dirt [ours; a bright ball
# near the horizon was read as snow by both voters before this].
_MIN_SPHERE_FRACTION = {"water": 0.01, "dirt": 0.01, "snow": 0.03}


def hsv_features(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    return hsv[..., 0] * (360.0 / 256.0), hsv[..., 1] / 255.0, hsv[..., 2] / 255.0


def local_texture(rgb: np.ndarray, k: int = 7) -> np.ndarray:
    """Local standard deviation of lightness (0..100 scale)."""
    L = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32) * (100.0 / 255.0)
    m = cv2.blur(L, (k, k), borderType=cv2.BORDER_REFLECT)
    m2 = cv2.blur(L * L, (k, k), borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def classify(h: np.ndarray, s: np.ndarray, v: np.ndarray, lat_deg: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """Kind index per element (0 = none, k = _KINDS[k-1]) from hue (deg), saturation, value,
    latitude (deg) and texture. Vectorised; works on pixels or on region means."""
    h, s, v, lat, tex = np.broadcast_arrays(h, s, v, lat_deg, tex)
    out = np.zeros(h.shape, np.uint8)
    up, down = lat >= 0.0, lat < 0.0
    blue = (h >= 185) & (h <= 255) & (s > 0.15) & (v > 0.35)
    green = (h >= 65) & (h <= 170) & (s > 0.2) & (v > 0.1)
    smooth = tex < 8.0
    rules = [  # first match wins
        (up & ((blue & smooth) | ((s < 0.12) & (v > 0.75) & smooth)), 1),   # sky
        (up & green, 2),                                                   # tree / vegetation
        (down & green, 3),                                                 # grass
        (down & blue & smooth, 4),                                         # water
        (down & (h >= 15) & (h <= 50) & (s > 0.15) & (s < 0.7) & (v > 0.15) & (v < 0.75), 5),  # dirt
        (down & (s < 0.1) & (v > 0.85), 6),                                # snow
    ]
    for cond, k in reversed(rules):
        out[cond] = k
    return out


def _wrap_median(labels: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return labels
    p = k // 2
    padded = np.concatenate([labels[:, -p:], labels, labels[:, :p]], axis=1)
    return cv2.medianBlur(padded, k)[:, p:-p]


def _segments_from_kinds(kinds: np.ndarray, min_px: int, names: dict[str, str]) -> LabeledSegments:
    labels = np.zeros(kinds.shape, np.int32)
    seg_names: dict[int, str | None] = {}
    nxt = 1
    h, w = kinds.shape
    wrow = np.broadcast_to(row_solid_angles(h, w)[:, None] / (4 * np.pi), kinds.shape).ravel()
    for k in range(1, len(_KINDS) + 1):
        comp, n = wrap_components(kinds == k)
        if n == 0:
            continue
        areas = np.bincount(comp.ravel(), minlength=n + 1)
        sphere = np.bincount(comp.ravel(), weights=wrow, minlength=n + 1)
        min_sphere = _MIN_SPHERE_FRACTION.get(_KINDS[k - 1], 0.0)
        for c in range(1, n + 1):
            if areas[c] < min_px or sphere[c] < min_sphere:
                continue
            labels[comp == c] = nxt
            seg_names[nxt] = names[_KINDS[k - 1]]
            nxt += 1
    return LabeledSegments(labels, seg_names)


class ColorPriorVoter:
    """Per-pixel scene prior at reduced resolution, cleaned by a seam-aware median filter."""

    name = "color_prior"
    label_space = "master"
    tiled = False

    def __init__(self, work_width: int = 512, min_fraction: float = 2e-4):
        self.work_width = work_width
        self.min_fraction = min_fraction

    def segment(self, image: np.ndarray) -> LabeledSegments:
        H, W = image.shape[:2]
        w = min(W, self.work_width)
        small = cv2.resize(image, (w, w // 2), interpolation=cv2.INTER_AREA) if w != W else image
        h_, s_, v_ = hsv_features(small)
        _, lat = lonlat_axes(w // 2, w)
        kinds = classify(h_, s_, v_, np.degrees(lat)[:, None], local_texture(small))
        kinds = _wrap_median(kinds, 5)
        if w != W:
            kinds = cv2.resize(kinds, (W, H), interpolation=cv2.INTER_NEAREST)
        return _segments_from_kinds(kinds, max(1, int(self.min_fraction * H * W)), _MASTER)


class ClusterPriorVoter:
    """k-means over colour, texture and latitude; each cluster region is named from its means."""

    name = "cluster_prior"
    label_space = "coco_panoptic"
    tiled = False

    def __init__(self, k: int = 8, work_width: int = 256, min_fraction: float = 2e-4, seed: int = 0):
        self.k = k
        self.work_width = work_width
        self.min_fraction = min_fraction
        self.seed = seed

    def segment(self, image: np.ndarray) -> LabeledSegments:
        H, W = image.shape[:2]
        w = min(W, self.work_width)
        small = cv2.resize(image, (w, w // 2), interpolation=cv2.INTER_AREA) if w != W else image
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
        tex = local_texture(small, 5)
        _, lat = lonlat_axes(w // 2, w)
        latmap = np.broadcast_to(np.degrees(lat)[:, None], (w // 2, w))
        feats = np.stack([lab[..., 0] * (100 / 255), lab[..., 1] - 128, lab[..., 2] - 128, tex, latmap * 0.3], -1)
        data = feats.reshape(-1, feats.shape[-1]).astype(np.float32)
        cv2.setRNGSeed(self.seed)  # k-means++ seeding draws from OpenCV's global RNG
        k = min(self.k, len(data))
        _, assign, _ = cv2.kmeans(data, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5),
                                  2, cv2.KMEANS_PP_CENTERS)
        clusters = _wrap_median(assign.reshape(w // 2, w).astype(np.uint8), 3)
        h_, s_, v_ = hsv_features(small)
        # one kind per connected region of a cluster, from the region's mean features
        kinds = np.zeros_like(clusters)
        for c in range(k):
            comp, n = wrap_components(clusters == c)
            if n == 0:
                continue
            idx = comp.ravel()
            cnt = np.bincount(idx, minlength=n + 1).astype(np.float64)
            cnt[cnt == 0] = 1

            def mean(a: np.ndarray, idx=idx, n=n, cnt=cnt) -> np.ndarray:
                return np.bincount(idx, a.ravel().astype(np.float64), minlength=n + 1) / cnt

            # hue is circular: average it as a vector
            hr = np.radians(h_)
            mh = np.degrees(np.arctan2(mean(np.sin(hr)), mean(np.cos(hr)))) % 360
            region_kind = classify(mh, mean(s_), mean(v_), mean(latmap), mean(tex))
            region_kind[0] = 0
            kinds = np.where(comp > 0, region_kind[comp], kinds).astype(np.uint8)
        if w != W:
            kinds = cv2.resize(kinds, (W, H), interpolation=cv2.INTER_NEAREST)
        return _segments_from_kinds(kinds, max(1, int(self.min_fraction * H * W)), _COCO)
