"""Procedural textures for the synthetic clips, built so that they cannot betray the ERP grid.

Every texture is a sum of random plane waves ``sin(k . v + phi)``. On the sphere ``v`` is the
3D unit vector of a pixel, never its (x, y): a function of ``v`` is automatically continuous
across the left/right seam and smooth at the poles, which is exactly what a real 360 camera
shows and what a seam-aware pipeline must not be rewarded for mishandling. On an object the
same construction runs in the object's own tangent-plane coordinates, so the pattern travels
and scales with the object (optical flow sees it move rigidly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SphereNoise:
    """Band-limited noise on the unit sphere with roughly unit RMS.

    ``k`` (m, 3) wave vectors (radians per unit of the embedding space), ``phase`` (m,),
    ``amp`` (m,). Scaled so that the RMS of the sum is ~1 whatever the number of waves, which
    lets callers reason in "standard deviations" when they threshold it into clouds.
    """

    k: np.ndarray
    phase: np.ndarray
    amp: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, *, base: float, octaves: int, waves: int,
               persistence: float = 0.5, horizontal: bool = False) -> SphereNoise:
        """``base`` is the wave number of the coarsest octave (about ``base / 2pi`` cycles per
        radian); ``horizontal`` keeps the wave vectors in the equatorial plane, for functions
        that should depend on the heading only (the horizon line)."""
        ks, phases, amps = [], [], []
        for o in range(octaves):
            d = rng.normal(size=(waves, 3))
            if horizontal:
                d[:, 2] = 0.0
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            mag = base * (2.0 ** o) * rng.uniform(0.8, 1.25, size=(waves, 1))
            ks.append(d * mag)
            phases.append(rng.uniform(0, 2 * np.pi, size=waves))
            amps.append(np.full(waves, persistence ** o))
        amp = np.concatenate(amps)
        amp = amp / np.sqrt(0.5 * np.sum(amp ** 2))  # RMS of a sum of independent sines
        return cls(np.concatenate(ks).astype(np.float32), np.concatenate(phases).astype(np.float32),
                   amp.astype(np.float32))

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """Noise at unit vectors ``v`` (..., 3), float32 of shape ``v.shape[:-1]``.

        One wave at a time: the (pixels x waves) matrix of a full frame would cost far more
        memory than it saves time."""
        out = np.zeros(v.shape[:-1], np.float32)
        for k, ph, a in zip(self.k, self.phase, self.amp):
            arg = v @ k
            arg += ph
            np.sin(arg, out=arg)
            arg *= a
            out += arg
        return out


@dataclass(frozen=True, eq=False)
class PlaneTexture:
    """A few plane waves in an object's tangent plane, normalised to [-1, 1].

    Coordinates are in units of the object's bounding radius, so "cycles per unit" means
    stripes per radius whatever the object's apparent size.
    """

    k: np.ndarray  # (m, 2)
    phase: np.ndarray  # (m,)
    amp: np.ndarray  # (m,), sums to 1

    @classmethod
    def random(cls, rng: np.random.Generator, *, waves: int = 3, cycles: tuple[float, float] = (0.8, 2.2)) -> PlaneTexture:
        ang = rng.uniform(0, 2 * np.pi, size=waves)
        mag = 2 * np.pi * rng.uniform(*cycles, size=waves)
        k = np.stack([np.cos(ang) * mag, np.sin(ang) * mag], axis=1)
        amp = rng.uniform(0.5, 1.0, size=waves)
        amp /= amp.sum()
        return cls(k.astype(np.float32), rng.uniform(0, 2 * np.pi, size=waves).astype(np.float32),
                   amp.astype(np.float32))

    def __call__(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(p), np.float32)
        for (kp, kq), ph, a in zip(self.k, self.phase, self.amp):
            out += a * np.sin(kp * p + kq * q + ph)
        return out
