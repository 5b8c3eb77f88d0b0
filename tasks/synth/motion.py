"""Object trajectories on normalised clip time and the pose of an object on the sphere.

Time is ``s`` in [0, 1] (first to last frame), not seconds: a scenario (seam crossing, pole
visit, occlusion) is placed at a fraction of the clip, so it happens whatever the duration and
frame rate. Paths are keyframes in (lon, lat) degrees with an easing per segment; longitudes are
*unwrapped* (a path from 170 to 200 crosses the seam) so that interpolation never takes the long
way round.

A pose carries the object's tangent frame. The frame is "upright" (first axis east, second
north, turned by the object's roll), which is well defined everywhere except exactly at a pole;
paths are kept a few degrees off the poles, and the frame then changes smoothly, so a shape
near a pole does not spin unless its path turns around the pole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EASES = ("linear", "out", "in")


def ease(kind: str, x: float) -> float:
    """Map [0, 1] onto [0, 1].

    ``out`` decelerates to zero speed at the end, ``in`` starts from zero speed. They are
    linear for the first (last) half and quadratic for the other, so the peak speed is only
    4/3 of the average: a cosine ease would need 1.57 and push the pole visit past the ~2 deg
    per frame that optical flow can follow.
    """
    x = min(max(x, 0.0), 1.0)
    if kind == "linear":
        return x
    if kind == "out":
        if x <= 0.5:
            return 4.0 / 3.0 * x
        u = x - 0.5
        return 2.0 / 3.0 + 4.0 / 3.0 * u - 4.0 / 3.0 * u * u
    if kind == "in":
        return 1.0 - ease("out", 1.0 - x)
    raise ValueError(f"unknown ease {kind!r} (known: {', '.join(EASES)})")


@dataclass(frozen=True)
class Path:
    """Keyframes ``(s, lon, lat)`` (degrees, lon unwrapped) with one easing per segment."""

    s: tuple[float, ...]
    lon: tuple[float, ...]
    lat: tuple[float, ...]
    eases: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.s)
        if n < 2 or len(self.lon) != n or len(self.lat) != n or len(self.eases) != n - 1:
            raise ValueError("a path needs >= 2 keyframes and one easing per segment")
        if self.s[0] != 0.0 or self.s[-1] != 1.0 or any(b <= a for a, b in zip(self.s, self.s[1:])):
            raise ValueError(f"keyframe times must rise strictly from 0 to 1, got {self.s}")
        for e in self.eases:
            if e not in EASES:
                raise ValueError(f"unknown ease {e!r}")
        if any(abs(la) > 89.0 for la in self.lat):
            raise ValueError("keyframes must stay at least 1 degree off the poles (the upright frame is undefined there)")

    @classmethod
    def linear(cls, lon0: float, lat0: float, lon1: float, lat1: float) -> Path:
        return cls((0.0, 1.0), (lon0, lon1), (lat0, lat1), ("linear",))

    def at(self, s: float) -> tuple[float, float]:
        """(lon, lat) in degrees at time ``s``; lon is unwrapped (not reduced to [-180, 180))."""
        s = min(max(float(s), 0.0), 1.0)
        i = 0
        while i < len(self.s) - 2 and s > self.s[i + 1]:
            i += 1
        x = (s - self.s[i]) / (self.s[i + 1] - self.s[i])
        e = ease(self.eases[i], x)
        lon = self.lon[i] + (self.lon[i + 1] - self.lon[i]) * e
        lat = self.lat[i] + (self.lat[i + 1] - self.lat[i]) * e
        return lon, lat


@dataclass(frozen=True)
class Pose:
    """Where an object is in one frame.

    ``lon``/``lat``/``roll`` in radians; ``tan_radius`` is the tangent of the bounding angular
    radius, i.e. the object's bounding radius on the unit-distance tangent plane, which is the
    quantity the gnomonic test divides by; ``distance`` orders objects in depth.
    """

    lon: float
    lat: float
    roll: float
    tan_radius: float
    distance: float

    @property
    def radius(self) -> float:
        """Bounding angular radius (radians)."""
        return math.atan(self.tan_radius)

    def frame(self) -> np.ndarray:
        """(3, 3) float64 matrix whose columns are the centre direction ``c`` and the tangent
        axes ``e1`` (east turned by roll) and ``e2`` (north turned by roll). A pixel's unit
        vector ``v`` times this matrix gives ``(v.c, v.e1, v.e2)``, from which the gnomonic
        coordinates are ``(v.e1 / v.c, v.e2 / v.c)``."""
        cl, sl = math.cos(self.lat), math.sin(self.lat)
        co, so = math.cos(self.lon), math.sin(self.lon)
        c = np.array([cl * co, cl * so, sl])
        east = np.array([-so, co, 0.0])
        north = np.array([-sl * co, -sl * so, cl])
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        e1 = cr * east + sr * north
        e2 = -sr * east + cr * north
        return np.stack([c, e1, e2], axis=1)

    def centre(self) -> np.ndarray:
        cl = math.cos(self.lat)
        return np.array([cl * math.cos(self.lon), cl * math.sin(self.lon), math.sin(self.lat)])


def rotate_pose(pose: Pose, R: np.ndarray) -> Pose:
    """The pose as a camera whose content moves by ``R`` sees it (see :mod:`tasks.synth.camera`):
    centre and tangent axes turned by ``R``, re-expressed as (lon, lat, roll) so the renderer's
    window and gnomonic test need no special case. Exact except within 1e-9 rad of a pole,
    where east is undefined and any east is as good."""
    F = np.asarray(R, np.float64) @ pose.frame()
    c, e1 = F[:, 0], F[:, 1]
    lon = math.atan2(c[1], c[0])
    lat = math.asin(max(-1.0, min(1.0, float(c[2]))))
    co, so, sl, cl = math.cos(lon), math.sin(lon), math.sin(lat), math.cos(lat)
    east = np.array([-so, co, 0.0])
    north = np.array([-sl * co, -sl * so, cl])
    roll = math.atan2(float(e1 @ north), float(e1 @ east))
    return Pose(lon=lon, lat=lat, roll=roll, tan_radius=pose.tan_radius, distance=pose.distance)


def wrap_deg(lon: float) -> float:
    """Longitude in degrees reduced to [-180, 180)."""
    return (lon + 180.0) % 360.0 - 180.0


def arc_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Great-circle angle between two unit vectors, in degrees (stable for tiny angles)."""
    return math.degrees(math.atan2(float(np.linalg.norm(np.cross(a, b))), float(np.dot(a, b))))
