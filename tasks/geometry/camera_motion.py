"""Camera rotation between two ERP frames (issue #10 §2: "camera rotation is estimated and used").

Real 360° footage is shot from a hand, a helmet, a drone or a car, so the whole sphere rotates
from frame to frame. Between two frames close in time the camera's translation moves only nearby
content by a visible amount, while its rotation moves *every* pixel; this module estimates that
rotation so the propagators can follow objects relative to the de-rotated scene.

Method (OpenCV/numpy; ~13 ms of CPU per frame of a video at the default 512 columns, each
frame's features computed once, see tests/bench/bench_camera_motion.py):

1. both frames to grey at ``work_width`` (INTER_AREA), wrap-padded by ORB's border so corners
   on the seam are found and matched like any other (the ERP seam is not an edge of the scene);
2. ORB corners, spread over the sphere by area (:func:`_spread`) so that one strongly textured
   object cannot own most of them, with their descriptors, matched both ways with Lowe's ratio
   test;
3. each match becomes a pair of unit vectors ``(a, b)`` (:mod:`tasks.geometry.erp`), and a
   rotation-only RANSAC on the sphere (two correspondences fix a rotation) finds the largest
   consistent set; objects that move on their own are outliers of it;
4. a Kabsch (orthogonal Procrustes) refit on the inliers, repeated as the inlier set settles;
5. the inlier corners of ``prev`` are then tracked into ``cur`` to sub-pixel precision with
   pyramidal Lucas-Kanade started at the RANSAC prediction, and the rotation is refit on them
   (ORB corners sit on the pixel grid of their pyramid level: alone they leave ~0.06 deg of
   error for 5-deg motions, LK ~0.02 deg; 30-deg turns ~0.1-0.2 deg).

Failures are explicit (:class:`CameraMotion` ``ok=False`` with the identity and a reason):
``uniform`` when a frame has no texture to measure on (grey, black, lens cap), ``cut`` when
both frames are textured but nothing in them agrees (a new scene; also a frame blurred beyond
recognition, Gaussian sigma >= 4 px at 512 columns), ``too_few_matches`` / ``low_inliers`` when
part of the scene agrees but too little to trust (heavy blur, a large object filling the view).

Known limit: the rotation is the motion of the largest consistent part of the scene. A textured
object that moves on its own and covers about a fifth of the sphere or more (with the background
it hides) can outvote the background; an eighth of the sphere is measured to be safe.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from tasks.geometry.erp import check_erp, lat_of_y, lon_of_x, lonlat_to_vec
from tasks.geometry.rotation import check_rotation

# -- thresholds (measured on the real panoramas, tests/bench/bench_camera_motion.py) -----------
# Grey-level standard deviation under which a frame carries no measurable texture: a flat grey or
# black frame (std 0) or a lens cap with sensor noise (std ~1-2); real panoramas are >= 30.
_UNIFORM_STD = 3.0
# Fewer ORB corners than this on either frame: not enough texture to fix a rotation.
_MIN_KEYPOINTS = 30
# A rotation needs at least this many matches, and this many of them consistent with it: with
# random matches (a cut) RANSAC finds at most a handful consistent by chance.
_MIN_MATCHES = 20
_MIN_INLIERS = 15
# Share of matches that must agree with the rotation; below it the estimate is not trusted.
# A moving object over an eighth of the sphere leaves 0.67-0.97 on the real panoramas [bench].
_MIN_INLIER_RATIO = 0.25
# Lowe's ratio test on Hamming distances (0.8 in Lowe 2004; ORB matches tolerate it too).
_RATIO = 0.8
# RANSAC inlier threshold, in pixels at work_width (converted to an angle): ORB corners are
# exact to about one pixel of their pyramid level.
_RANSAC_PX = 3.0
# After LK refinement the residuals are sub-pixel: refit on those within this many pixels.
_REFINE_PX = 1.0
# Inliers tracked by LK at most (the error of the refit falls as 1/sqrt(n): 300 is < 0.02 deg).
_LK_MAX_POINTS = 300
# Random matches between unrelated frames: RANSAC finds at most 2-4 consistent by chance; fewer
# than this many consistent matches means nothing of one frame is in the other (a cut).
_CUT_MAX_INLIERS = 8


@dataclass(frozen=True)
class CameraMotion:
    """The rotation of the scene between two frames, with how far to trust it.

    ``rotation`` is an action on content (the convention of :mod:`tasks.geometry.rotation`):
    what was at unit vector ``v`` in the previous frame is at ``rotation @ v`` in the current
    one, so ``rotate_erp(prev, rotation)`` looks like ``cur``. When ``ok`` is False it is the
    identity and ``reason`` says why (``uniform``, ``too_few_matches``, ``low_inliers``, ``cut``).
    """

    rotation: np.ndarray
    inlier_ratio: float
    matches: int
    ok: bool
    reason: str | None
    inliers: int = 0
    # median angular residual of the inliers, degrees (precision of the fit)
    residual_deg: float = float("nan")
    timings_ms: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def angle_deg(self) -> float:
        """How far the camera turned between the two frames, in degrees."""
        return rotation_angle_deg(self.rotation)

    def as_dict(self) -> dict:
        """JSON-ready form for stage outputs and QA flags."""
        return {
            "rotation": np.round(self.rotation, 9).tolist(),
            "angle_deg": round(self.angle_deg, 4),
            "inlier_ratio": round(float(self.inlier_ratio), 4),
            "matches": int(self.matches),
            "inliers": int(self.inliers),
            "ok": bool(self.ok),
            "reason": self.reason,
        }


# -- rotation helpers -----------------------------------------------------------------------------
def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of the rotation ``R`` about its axis, in degrees (0 for the identity)."""
    R = np.asarray(R, dtype=np.float64)
    c = (np.trace(R) - 1.0) / 2.0
    # arctan2 form is accurate for small angles, where arccos(trace) loses half its digits
    s = np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    return math.degrees(math.atan2(s, c))


def angle_between_deg(A: np.ndarray, B: np.ndarray) -> float:
    """Angular distance between two rotations, degrees (the angle of ``A.T @ B``)."""
    return rotation_angle_deg(np.asarray(A, dtype=np.float64).T @ np.asarray(B, dtype=np.float64))


def compose(*rotations: np.ndarray) -> np.ndarray:
    """The rotation of applying ``rotations`` in order (first argument first): for frame-to-frame
    motions ``R_01, R_12`` the motion from frame 0 to frame 2 is ``compose(R_01, R_12)`` =
    ``R_12 @ R_01``. Re-orthonormalised, so accumulating thousands of steps does not drift off
    the rotation group."""
    out = np.eye(3)
    for R in rotations:
        out = np.asarray(R, dtype=np.float64) @ out
    return nearest_rotation(out)


def nearest_rotation(M: np.ndarray) -> np.ndarray:
    """The proper rotation closest to ``M`` in Frobenius norm (SVD projection)."""
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64))
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    return U @ np.diag([1.0, 1.0, d]) @ Vt


class RotationAccumulator:
    """Orientation of every frame relative to a reference frame, from frame-to-frame motions.

    ``push(motion)`` adds the motion from the previous frame to the next one and returns the
    rotation that carries reference-frame content to the new frame; a motion that is not ``ok``
    contributes the identity (the camera is assumed still across an unreliable step, so the error
    is bounded by that one step instead of a random rotation).
    """

    def __init__(self) -> None:
        self.rotation = np.eye(3)

    def push(self, motion: CameraMotion | np.ndarray) -> np.ndarray:
        if isinstance(motion, CameraMotion):
            if not motion.ok:
                return self.rotation.copy()
            step = motion.rotation
        else:
            step = check_rotation(motion)
        self.rotation = compose(self.rotation, step)
        return self.rotation.copy()


def kabsch(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The rotation ``R`` minimising ``sum w |R a_i - b_i|^2`` for unit vectors ``a, b`` (N, 3)."""
    H = (a * (weights[:, None] if weights is not None else 1.0)).T @ b  # sum a b^T
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    return Vt.T @ np.diag([1.0, 1.0, d]) @ U.T


# -- frame preparation --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FrameFeatures:
    """What :func:`estimate_rotation` needs of one frame, computed once by :func:`frame_features`
    so a pipeline that estimates every consecutive pair pays for each frame once."""

    gray: np.ndarray            # (h, w) uint8 at work width
    points: np.ndarray          # (n, 2) float32 corner positions (x, y) in the work frame
    descriptors: np.ndarray | None
    std: float                  # grey-level standard deviation

    @property
    def uniform(self) -> bool:
        return self.std < _UNIFORM_STD or len(self.points) < _MIN_KEYPOINTS


_ORB_EDGE = 31  # ORB's default edgeThreshold / patchSize
# ORB pyramid: consecutive frames differ by little scale, and levels beyond 5 at 512x256 are
# smaller than ORB's patch; fewer levels is ~30% less time for the same matches [bench]
_ORB_LEVELS = 5
# Corners detected before spreading them over the sphere (x max_features), and cells across the
# width for the spreading (16 cells of 32 px at 512 columns).
_OVERDETECT = 2
_CELLS_ACROSS = 16


def _to_gray(frame: np.ndarray, work_width: int) -> np.ndarray:
    h, w = check_erp(frame)
    if work_width % 2 or work_width < 64:
        raise ValueError(f"work_width must be an even number >= 64, got {work_width}")
    img = np.asarray(frame)
    if img.dtype != np.uint8:
        # float frames in [0, 1] (the propagators' own format) or wider integers
        img = np.clip(img * 255.0 if img.dtype.kind == "f" and img.max(initial=0) <= 1.0 else img,
                      0, 255).astype(np.uint8)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGBA2GRAY)
        else:
            raise ValueError(f"frame must be grey, RGB or RGBA, got {img.shape[2]} channels")
    if w != work_width:
        interp = cv2.INTER_AREA if w > work_width else cv2.INTER_LINEAR
        img = cv2.resize(img, (work_width, work_width // 2), interpolation=interp)
    return np.ascontiguousarray(img)


def frame_features(frame: np.ndarray, *, work_width: int = 512, max_features: int = 600
                   ) -> FrameFeatures:
    """Grey image and ORB corners (seam-continuous, spread over the sphere) of a frame."""
    gray = _to_gray(frame, work_width)
    h, w = gray.shape
    std = float(gray.std())
    if std < _UNIFORM_STD:
        return FrameFeatures(gray, np.zeros((0, 2), np.float32), None, std)
    pad = _ORB_EDGE + 1
    padded = cv2.copyMakeBorder(gray, 0, 0, pad, pad, cv2.BORDER_WRAP)
    orb = cv2.ORB_create(nfeatures=_OVERDETECT * max_features, edgeThreshold=_ORB_EDGE,
                         patchSize=_ORB_EDGE, fastThreshold=10, nlevels=_ORB_LEVELS)
    kps = orb.detect(padded, None)
    kps = _spread(kps, pad, h, w, max_features)
    if kps:
        kps, desc = orb.compute(padded, kps)
    if not kps or desc is None:
        return FrameFeatures(gray, np.zeros((0, 2), np.float32), None, std)
    pts = np.array([kp.pt for kp in kps], dtype=np.float32)
    pts[:, 0] -= pad
    return FrameFeatures(gray, np.ascontiguousarray(pts), desc, std)


def _spread(kps, pad: int, h: int, w: int, max_features: int) -> list:
    """At most a fixed share of the corners per cell of the sphere, strongest first.

    ORB keeps the strongest corners of the whole frame, so one strongly textured object can own
    most of them, and RANSAC then returns *its* motion (a pasted 360VOT patch over 18% of the
    frame won with 145 deg of error before this). Bucketing by area (cells of _CELL px, each
    with a quota proportional to its solid angle) makes the consensus a vote of the scene's
    area, which the background wins."""
    if not kps:
        return []
    pts = np.array([kp.pt for kp in kps], dtype=np.float32)
    x = pts[:, 0] - pad
    # the padding repeats the seam's neighbourhood: keep each corner once, in [0, w)
    inside = np.flatnonzero((x >= -0.5) & (x < w - 0.5))
    if not len(inside):
        return []
    x, y = np.clip(x[inside], 0, w - 1), np.clip(pts[inside, 1], 0, h - 1)
    resp = np.array([kps[i].response for i in inside], dtype=np.float64)
    cell = max(8, w // _CELLS_ACROSS)
    nx, ny = -(-w // cell), -(-h // cell)
    cx, cy = (x // cell).astype(np.int64), (y // cell).astype(np.int64)
    # quota per cell ~ its solid angle (cos of its centre latitude), at least one corner
    lat_c = np.pi / 2 - (np.arange(ny) + 0.5) * cell / h * np.pi
    share = np.maximum(np.cos(lat_c), 0.05)
    quota_row = np.maximum(1, np.round(max_features * share / (nx * share.sum()) * 1.5)).astype(np.int64)
    key = cy * nx + cx
    order = np.lexsort((-resp, key))
    ks = key[order]
    first = np.r_[0, np.flatnonzero(np.diff(ks)) + 1]
    rank = np.arange(len(ks)) - np.repeat(first, np.diff(np.r_[first, len(ks)]))
    keep = order[rank < quota_row[cy[order]]]
    # still at most max_features: the strongest of those within their quota
    keep = keep[np.argsort(-resp[keep], kind="stable")[:max_features]]
    return [kps[inside[i]] for i in keep]


def _vectors(points: np.ndarray, h: int, w: int) -> np.ndarray:
    # keypoint coordinates are pixel-centre based (pixel i at i): lon_of_x / lat_of_y take those
    return lonlat_to_vec(lon_of_x(points[:, 0], w), lat_of_y(points[:, 1], h))


def _match(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Mutual ratio-test matches between two ORB descriptor sets, (m, 2) index pairs."""
    bf = cv2.BFMatcher(cv2.NORM_HAMMING)
    fwd = bf.knnMatch(d1, d2, k=2)
    bwd = bf.knnMatch(d2, d1, k=1)
    best_back = np.full(len(d2), -1, dtype=np.int64)
    for m in bwd:
        if m:
            best_back[m[0].queryIdx] = m[0].trainIdx
    pairs = []
    for m in fwd:
        if len(m) == 2 and m[0].distance < _RATIO * m[1].distance or len(m) == 1:
            if best_back[m[0].trainIdx] == m[0].queryIdx:
                pairs.append((m[0].queryIdx, m[0].trainIdx))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _hypotheses(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations from pairs of correspondences (K, 2) -> (K, 3, 3), and which are well posed.

    Two unit vectors fix an orthonormal frame (a1, n, a1 x n) with n along a1 x a2; the rotation
    maps the frame built on the a-side to the one on the b-side."""
    a1, a2, b1, b2 = a[idx[:, 0]], a[idx[:, 1]], b[idx[:, 0]], b[idx[:, 1]]
    na, nb = np.cross(a1, a2), np.cross(b1, b2)
    la, lb = np.linalg.norm(na, axis=1), np.linalg.norm(nb, axis=1)
    # nearly parallel or antipodal pairs fix no rotation; pairs whose angular separation differs
    # between the frames cannot be related by a rotation at all
    sep_a = np.einsum("ij,ij->i", a1, a2)
    sep_b = np.einsum("ij,ij->i", b1, b2)
    good = (la > 0.05) & (lb > 0.05) & (np.abs(sep_a - sep_b) < 0.02)
    la, lb = np.where(good, la, 1.0), np.where(good, lb, 1.0)
    na, nb = na / la[:, None], nb / lb[:, None]
    Fa = np.stack([a1, na, np.cross(a1, na)], axis=2)  # columns
    Fb = np.stack([b1, nb, np.cross(b1, nb)], axis=2)
    return Fb @ np.transpose(Fa, (0, 2, 1)), good


def _residuals(R: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians, chord approximation) between ``R a`` and ``b``."""
    return np.linalg.norm(a @ R.T - b, axis=-1)


def _ransac(a: np.ndarray, b: np.ndarray, thresh: float, rng: np.random.Generator,
            max_iterations: int = 512, batch: int = 32, confidence: float = 0.999
            ) -> tuple[np.ndarray, np.ndarray]:
    """Two-point rotation RANSAC in batches, stopping once ``confidence`` that an all-inlier
    sample was drawn is reached (at a 0.9 inlier ratio that is the first batch). The largest
    consistent set wins: corners are spread by area (:func:`_spread`), so that is the set
    covering the most of the scene. (Ranking hypotheses by the area their inliers cover instead
    of their count changed nothing on 60 pasted-object cases, so the simpler count stays.)"""
    n = len(a)
    best_R, best_count, best_inl = np.eye(3), -1, np.zeros(n, bool)
    drawn = 0
    while drawn < max_iterations:
        idx = rng.integers(0, n, size=(batch, 2))
        drawn += batch
        idx = idx[idx[:, 0] != idx[:, 1]]
        Rs, good = _hypotheses(a, b, idx)
        Rs = Rs[good]
        if len(Rs):
            res = np.linalg.norm(np.einsum("kij,nj->kni", Rs, a) - b[None], axis=2)  # (K, n)
            counts = (res < thresh).sum(axis=1)
            k = int(np.argmax(counts))
            if counts[k] > best_count:
                best_R, best_count, best_inl = Rs[k], int(counts[k]), res[k] < thresh
        if best_count > 0:
            w = best_count / n
            p_good = max(w * w, 1e-12)
            needed = math.log(1 - confidence) / math.log(max(1 - p_good, 1e-12))
            if drawn >= needed:
                break
    R, inl = best_R, best_inl
    # refit on the inliers until the set settles (2-3 rounds in practice)
    for _ in range(4):
        if inl.sum() < 3:
            break
        R = kabsch(a[inl], b[inl])
        new = _residuals(R, a, b) < thresh
        if np.array_equal(new, inl):
            break
        inl = new
    return R, inl


def _refine_lk(f_prev: FrameFeatures, f_cur: FrameFeatures, R: np.ndarray, a: np.ndarray,
               pts_prev: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Track ``pts_prev`` into ``cur`` with LK started where ``R`` predicts them; the tracked
    positions are sub-pixel, so the rotation refit on them is several times more precise."""
    h, w = f_prev.gray.shape
    if len(a) > _LK_MAX_POINTS:  # precision saturates well before: an even subsample
        sel = np.linspace(0, len(a) - 1, _LK_MAX_POINTS).astype(np.int64)
        a, pts_prev = a[sel], pts_prev[sel]
    pad = 24
    # histogram-equalised: LK matches intensities, and an exposure change (gain 0.5 or 1.6) biased
    # it by 0.1-0.4 deg; equalisation is monotonic, so corners stay where they are
    pp = cv2.copyMakeBorder(cv2.equalizeHist(f_prev.gray), 0, 0, pad, pad, cv2.BORDER_WRAP)
    pc = cv2.copyMakeBorder(cv2.equalizeHist(f_cur.gray), 0, 0, pad, pad, cv2.BORDER_WRAP)
    pred = a @ R.T
    lon = np.arctan2(pred[:, 1], pred[:, 0])
    lat = np.arcsin(np.clip(pred[:, 2], -1, 1))
    px = (lon + np.pi) / (2 * np.pi) * w - 0.5
    py = (np.pi / 2 - lat) / np.pi * h - 0.5
    p0 = pts_prev.astype(np.float32).copy()
    p0[:, 0] += pad
    p1 = np.stack([px, py], axis=1).astype(np.float32)
    # the prediction may sit across the seam from the source point: put it on the nearest copy
    p1[:, 0] = p0[:, 0] + ((p1[:, 0] + pad - p0[:, 0] + w / 2) % w - w / 2)
    inside = (p1[:, 0] >= 2) & (p1[:, 0] < w + 2 * pad - 2) & (p1[:, 1] >= 2) & (p1[:, 1] < h - 2)
    if inside.sum() < _MIN_INLIERS:
        return None
    p0, p1 = p0[inside], p1[inside]
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(
        pp, pc, p0.reshape(-1, 1, 2), p1.reshape(-1, 1, 2).copy(), winSize=(15, 15), maxLevel=1,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01),
        flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    ok = status.ravel() == 1
    if ok.sum() < _MIN_INLIERS:
        return None
    tracked = tracked.reshape(-1, 2)[ok]
    tracked[:, 0] = np.mod(tracked[:, 0] - pad + 0.5, w) - 0.5
    a2 = a[inside][ok]
    b2 = _vectors(tracked, h, w)
    return a2, b2, _residuals(R, a2, b2) < thresh


def estimate_rotation(prev: np.ndarray | FrameFeatures, cur: np.ndarray | FrameFeatures, *,
                      work_width: int = 512, max_features: int = 600, refine: bool = True,
                      seed: int = 0) -> CameraMotion:
    """Rotation of the scene from ``prev`` to ``cur`` (ERP frames of any 2:1 size, RGB/grey, or
    :class:`FrameFeatures` of them computed at ``work_width``). Never raises on content: a frame
    without texture or a cut gives ``ok=False``, the identity and the reason."""
    t0 = time.perf_counter()
    fp = prev if isinstance(prev, FrameFeatures) else frame_features(
        prev, work_width=work_width, max_features=max_features)
    fc = cur if isinstance(cur, FrameFeatures) else frame_features(
        cur, work_width=work_width, max_features=max_features)
    if fp.gray.shape != fc.gray.shape:
        raise ValueError(f"features at different work sizes: {fp.gray.shape} vs {fc.gray.shape}")
    t1 = time.perf_counter()
    h, w = fp.gray.shape

    def fail(reason: str, matches: int = 0, inliers: int = 0, ratio: float = 0.0) -> CameraMotion:
        return CameraMotion(np.eye(3), ratio, matches, False, reason, inliers=inliers,
                            timings_ms={"features": (t1 - t0) * 1e3,
                                        "total": (time.perf_counter() - t0) * 1e3})

    if fp.uniform or fc.uniform:
        return fail("uniform")
    pairs = _match(fp.descriptors, fc.descriptors)
    t2 = time.perf_counter()
    m = len(pairs)
    if m < 3:
        return fail("cut", m)
    pts_prev = fp.points[pairs[:, 0]]
    a = _vectors(pts_prev, h, w)
    b = _vectors(fc.points[pairs[:, 1]], h, w)
    step = 2 * np.pi / w  # one pixel at the equator, radians
    rng = np.random.default_rng(seed)
    R, inl = _ransac(a, b, _RANSAC_PX * step, rng)
    n_in = int(inl.sum())
    ratio = n_in / m
    if n_in < _MIN_INLIERS or ratio < _MIN_INLIER_RATIO or m < _MIN_MATCHES:
        if n_in < _CUT_MAX_INLIERS:
            # textured frames of which nothing agrees with any rotation: a new scene (a solid-angle
            # weighted histogram, rotation-invariant, was tried as a second cue and dropped: an
            # exposure change moves it more than a cut between two of the real panoramas does)
            reason = "cut"
        elif m < _MIN_MATCHES:
            reason = "too_few_matches"
        else:
            reason = "low_inliers"
        return fail(reason, m, n_in, ratio)
    t3 = time.perf_counter()
    res = _residuals(R, a[inl], b[inl])
    if refine:
        got = _refine_lk(fp, fc, R, a[inl], pts_prev[inl], _RANSAC_PX * step)
        if got is not None:
            a2, b2, keep = got
            if keep.sum() >= _MIN_INLIERS:
                R2 = kabsch(a2[keep], b2[keep])
                r2 = _residuals(R2, a2, b2)
                tight = r2 < _REFINE_PX * step
                if tight.sum() >= _MIN_INLIERS:
                    R2 = kabsch(a2[tight], b2[tight])
                    res = _residuals(R2, a2[tight], b2[tight])
                R = R2
    t4 = time.perf_counter()
    R = nearest_rotation(R)
    return CameraMotion(
        R, ratio, m, True, None, inliers=n_in,
        residual_deg=math.degrees(float(np.median(res))) if len(res) else float("nan"),
        timings_ms={"features": (t1 - t0) * 1e3, "match": (t2 - t1) * 1e3,
                    "ransac": (t3 - t2) * 1e3, "refine": (t4 - t3) * 1e3,
                    "total": (t4 - t0) * 1e3})



class KeyRotation:
    """Rotation of the scene from a key frame to the current frame, anchored on the key.

    Chaining frame-to-frame estimates accumulates their errors as a random walk (0.076 deg after
    30 frames of a real re-shot pan, 0098; 0.2 px at 1024 columns). Each frame is therefore also
    matched directly against the key frame, whose error does not grow with the frame count
    (max 0.026 deg on the same pan) but does with the rotation since the key (0.05-0.08 deg
    after 20-40 deg of random pitch/roll/yaw, where the chain was 0.04-0.05). Each frame takes
    the mean of the two when they agree within ``agree_deg`` and the chain restarts from
    it: errors stay bounded (a complementary filter), under 0.1 deg on every frame of the tests.
    A frame the key cannot be matched with (the scene turned away from it) keeps the chained
    value. ``rotation`` is None once a step failed and the key could not be matched either: the
    motion since the key is unknown, never guessed.

    ``agree_deg``: a direct estimate further than this from the chained one is distrusted (a
    wrong consensus, e.g. a large object moving on its own, is off by degrees; the two agree to
    < 0.1 deg on the real re-shot panoramas over 30 frames, tests/bench/bench_real.py).
    """

    def __init__(self, key: FrameFeatures, agree_deg: float = 1.0) -> None:
        self.key = key
        self.agree_deg = float(agree_deg)
        self.rotation: np.ndarray | None = np.eye(3)
        self.direct = 0          # frames whose rotation came from matching the key directly

    def update(self, step: CameraMotion | None, cur: FrameFeatures) -> np.ndarray | None:
        """Add the frame whose step from the previous one is ``step``; the rotation carrying
        key-frame content to it (an action on content, as :class:`CameraMotion`), or None."""
        chained = None
        if self.rotation is not None and step is not None and step.ok:
            chained = compose(self.rotation, step.rotation)
        direct = estimate_rotation(self.key, cur)
        if direct.ok and chained is None:
            self.rotation = direct.rotation
            self.direct += 1
        elif direct.ok and angle_between_deg(direct.rotation, chained) <= self.agree_deg:
            self.rotation = nearest_rotation(0.5 * (direct.rotation + chained))
            self.direct += 1
        else:
            self.rotation = chained
        return None if self.rotation is None else self.rotation.copy()
