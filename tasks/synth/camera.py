"""Camera paths for 360° clips, and re-shooting a still ERP image through one.

Real 360° footage is shot from a moving camera (handheld, helmet, car, drone), so the whole sphere
rotates from frame to frame (issue 10). A still panorama seen through a known camera path gives a
clip where every region has *exact* ground truth on every frame: the frame-0 mask rotated by the
same rotation.

Conventions (those of :mod:`tasks.geometry.rotation`): the camera's orientation at frame ``t``
relative to frame 0 is ``C_t = rotation_matrix(yaw_t, pitch_t, roll_t)``; the content of the
frame then moves by ``R_t = C_t.T`` (what frame 0 showed at direction ``v`` frame ``t`` shows at
``R_t @ v``), which is what :func:`tasks.geometry.rotation.rotate_erp` applies. A
:class:`CameraPath` holds the ``R_t`` (``rotations``) and the angles they came from.

Paths (all seeded, all smooth: the angles are sums of a few low-frequency sines, so the frame-to-
frame motion stays within what a real camera at 10-30 fps does):

* ``still``: no motion (the identity on every frame);
* ``pan``: a steady yaw of 15..30 deg/s, either way;
* ``handheld``: a yaw drift (random rate up to 10 deg/s plus a slow wobble) and smooth random pitch
  and roll, each reaching 8..12 deg at its extreme ("about +-12 deg", issue 10 §1.1);
* ``vehicle``: turns (a smooth 45..90 deg change of heading every few seconds), pitch bumps
  (short 2..5 deg dips, as over road joints) and a roll that leans into the turn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from tasks.geometry.erp import check_erp
from tasks.geometry.rotation import rotate_erp, rotation_matrix

CAMERAS = ("still", "pan", "handheld", "vehicle")

#: handheld pitch/roll extremes (degrees): "up to about +-12 deg" (issue 10 §1.1)
HANDHELD_TILT_DEG = (8.0, 12.0)
#: handheld yaw drift (deg/s) and the amplitude of its wobble (deg)
HANDHELD_DRIFT_DEG_S = 10.0
HANDHELD_WOBBLE_DEG = 6.0
#: pan speed range (deg/s): a steady pan a person makes to follow a scene
PAN_DEG_S = (15.0, 30.0)
#: vehicle: turn size (deg) and duration (s), time between turns (s), pitch bump depth (deg)
VEHICLE_TURN_DEG = (45.0, 90.0)
VEHICLE_TURN_S = (2.5, 4.0)
VEHICLE_GAP_S = (1.0, 3.0)
VEHICLE_BUMP_DEG = (2.0, 5.0)
VEHICLE_LEAN = 0.1  # roll (deg) per deg/s of yaw rate: ~4 deg in a 40 deg/s turn


@dataclass(frozen=True)
class CameraPath:
    """Per-frame camera orientation of a clip, as angles and as content rotations.

    ``angles`` (n, 3): yaw, pitch, roll in degrees of the camera relative to frame 0;
    ``rotations`` (n, 3, 3): the content rotation ``R_t`` of each frame (see the module
    docstring); ``rotations[0]`` is the identity.
    """

    kind: str
    fps: float
    seed: int
    angles: np.ndarray
    rotations: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.rotations.shape[0])

    def relative(self, t0: int, t1: int) -> np.ndarray:
        """Content rotation from frame ``t0`` to frame ``t1`` (``R_t1 @ R_t0.T``)."""
        return self.rotations[t1] @ self.rotations[t0].T

    def step_deg(self) -> np.ndarray:
        """Rotation angle (degrees) between consecutive frames, shape (n - 1,)."""
        out = []
        for t in range(1, self.n_frames):
            r = self.relative(t - 1, t)
            out.append(math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))))
        return np.asarray(out)

    def describe(self) -> dict:
        return {"camera": self.kind, "fps": self.fps, "seed": self.seed, "frames": self.n_frames,
                "max_step_deg": round(float(self.step_deg().max(initial=0.0)), 3),
                "max_abs_pitch_deg": round(float(np.abs(self.angles[:, 1]).max()), 3),
                "max_abs_roll_deg": round(float(np.abs(self.angles[:, 2]).max()), 3)}


def _smooth(rng: np.random.Generator, t: np.ndarray, peak: float, freqs: tuple[float, float] = (0.08, 0.5),
            waves: int = 4) -> np.ndarray:
    """A smooth random signal over times ``t`` (s) that is 0 at t = 0 and reaches ``peak`` in
    absolute value at its extreme within the clip: a sum of sines of 0.08..0.5 Hz (a hand's sway;
    the highest keeps the frame-to-frame step under ~2 deg at 10 fps for a 12 deg peak)."""
    f = rng.uniform(*freqs, size=waves)
    ph = rng.uniform(0, 2 * np.pi, size=waves)
    a = rng.uniform(0.5, 1.0, size=waves)
    s = (a[:, None] * (np.sin(2 * np.pi * f[:, None] * t[None, :] + ph[:, None]) - np.sin(ph)[:, None])).sum(0)
    m = float(np.abs(s).max()) if s.size else 0.0
    return s * (peak / m) if m > 0 else s


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _angles(kind: str, n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fps
    zero = np.zeros(n)
    if kind == "still":
        return np.stack([zero, zero, zero], 1)
    if kind == "pan":
        rate = rng.uniform(*PAN_DEG_S) * (1 if rng.random() < 0.5 else -1)
        return np.stack([rate * t, zero, zero], 1)
    if kind == "handheld":
        drift = rng.uniform(-HANDHELD_DRIFT_DEG_S, HANDHELD_DRIFT_DEG_S) * t
        yaw = drift + _smooth(rng, t, HANDHELD_WOBBLE_DEG)
        pitch = _smooth(rng, t, rng.uniform(*HANDHELD_TILT_DEG))
        roll = _smooth(rng, t, rng.uniform(*HANDHELD_TILT_DEG))
        return np.stack([yaw, pitch, roll], 1)
    if kind == "vehicle":
        tmax = float(t[-1]) if n else 0.0
        yaw = np.zeros(n)
        start = rng.uniform(0.3, 1.0)
        while start < tmax:
            dur = rng.uniform(*VEHICLE_TURN_S)
            size = rng.uniform(*VEHICLE_TURN_DEG) * (1 if rng.random() < 0.5 else -1)
            yaw += size * _smoothstep((t - start) / dur)
            start += dur + rng.uniform(*VEHICLE_GAP_S)
        rate = np.gradient(yaw, t) if n > 1 else zero
        pitch = np.zeros(n)
        start = rng.uniform(0.2, 0.8)
        while start < tmax:
            width = rng.uniform(0.25, 0.5)
            depth = rng.uniform(*VEHICLE_BUMP_DEG) * (1 if rng.random() < 0.5 else -1)
            pitch += depth * np.exp(-0.5 * ((t - start) / (width / 2.5)) ** 2)
            start += rng.uniform(0.8, 2.0)
        pitch -= pitch[0]
        pitch += _smooth(rng, t, 1.0, freqs=(0.5, 1.2))  # engine and road vibration, 1 deg
        roll = VEHICLE_LEAN * rate + _smooth(rng, t, 1.0, freqs=(0.5, 1.2))
        roll -= roll[0]
        return np.stack([yaw, pitch, roll], 1)
    raise ValueError(f"unknown camera {kind!r}; choose one of {', '.join(CAMERAS)}")


def camera_path(kind: str, n_frames: int, fps: float, seed: int = 0) -> CameraPath:
    """The camera path ``kind`` (one of :data:`CAMERAS`) for ``n_frames`` at ``fps``; the same
    arguments always give the same path. Raises ValueError for an unknown kind or bad sizes."""
    if kind not in CAMERAS:
        raise ValueError(f"unknown camera {kind!r}; choose one of {', '.join(CAMERAS)}")
    if not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise ValueError(f"n_frames must be an integer >= 1, got {n_frames!r}")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), CAMERAS.index(kind), 7360]))
    ang = _angles(kind, int(n_frames), float(fps), rng)
    ang = ang - ang[0]  # frame 0 is the reference orientation
    rot = np.stack([rotation_matrix(*np.radians(a)).T for a in ang]) if len(ang) else np.zeros((0, 3, 3))
    return CameraPath(kind, float(fps), int(seed), ang, rot)


def with_yaw_offset(path: CameraPath, yaw_deg: float) -> CameraPath:
    """The same motion with the world first turned by ``yaw_deg`` about the vertical
    (``R_t @ Rz(yaw)``; the camera's yaw angles drop by ``yaw_deg``), so frame 0 is no longer the
    identity. The synthetic scenes use it to put the seam object on the seam at its event frame
    whatever the path did before."""
    ang = path.angles.copy()
    ang[:, 0] -= yaw_deg
    rot = np.stack([rotation_matrix(*np.radians(a)).T for a in ang])
    return CameraPath(path.kind, path.fps, path.seed, ang, rot)


def render_still(image: np.ndarray, path: CameraPath, width: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of ``image`` (a still ERP RGB image) seen through ``path``, at ``width``
    (default: the image's width).

    The rotation is applied at the image's own resolution (up to twice ``width``) and the result
    area-averaged down, so a re-shot frame is as sharp as a real one at that width (bilinear at
    the output size would blur every frame by a fraction of a pixel)."""
    h, w = check_erp(image, "still image")
    out_w = int(width or w)
    if out_w % 2 or out_w < 2:
        raise ValueError(f"width must be an even number of pixels, got {out_w}")
    work_w = min(w, 2 * out_w)
    src = image if work_w == w else cv2.resize(image, (work_w, work_w // 2), interpolation=cv2.INTER_AREA)
    for R in path.rotations:
        f = rotate_erp(src, R)
        yield f if work_w == out_w else cv2.resize(f, (out_w, out_w // 2), interpolation=cv2.INTER_AREA)


def rotate_labels(idmap: np.ndarray, path: CameraPath) -> Iterator[np.ndarray]:
    """Yield the ground truth of a re-shot clip: the frame-0 id map (or mask) rotated by each
    frame's rotation, nearest (labels are never blended)."""
    check_erp(idmap, "id map")
    for R in path.rotations:
        yield rotate_erp(idmap, R, interpolation="nearest")
