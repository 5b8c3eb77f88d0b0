"""The static sky/grass world behind the objects.

Everything is a function of each pixel's 3D unit vector (see :mod:`tasks.synth.noise`), so the
background has no seam at the left/right border and no pinch at the poles. With a still camera
it is computed once per clip; a moving camera renders it per frame from the rotated pixel
directions (exact, ~0.3 s per 1024x512 frame).

The colours are chosen for the segmenters downstream: a saturated blue sky whose clouds only
lighten it (they never turn white enough to be mistaken for an object), and a green
meadow whose texture varies brightness by about +-15%, so both stay one colour cluster each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.geometry.erp import unit_vectors as pixel_vectors
from tasks.synth.noise import SphereNoise

SKY_ID = 1
GRASS_ID = 2

_SKY_ZENITH = np.array([48, 108, 205], np.float32)
_SKY_HORIZON = np.array([140, 186, 236], np.float32)
_CLOUD = np.array([226, 233, 242], np.float32)
_CLOUD_MAX = 0.35  # clouds blend at most this far from the sky colour towards white
_GRASS_NEAR = np.array([98, 150, 56], np.float32)  # at the horizon
_GRASS_NADIR = np.array([48, 112, 42], np.float32)
_GRASS_DRY = np.array([132, 148, 62], np.float32)
_HORIZON_AMPLITUDE = 0.035  # in z (~2 degrees of latitude per unit of noise)


@dataclass(frozen=True, eq=False)
class BackgroundSpec:
    horizon: SphereNoise
    clouds: SphereNoise
    grass_fine: SphereNoise
    grass_coarse: SphereNoise

    @classmethod
    def random(cls, rng: np.random.Generator) -> BackgroundSpec:
        return cls(
            horizon=SphereNoise.random(rng, base=2.5, octaves=2, waves=4, horizontal=True),
            clouds=SphereNoise.random(rng, base=3.0, octaves=4, waves=8, persistence=0.55),
            grass_fine=SphereNoise.random(rng, base=40.0, octaves=2, waves=10, persistence=0.6),
            grass_coarse=SphereNoise.random(rng, base=5.0, octaves=2, waves=5),
        )


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def render_background(spec: BackgroundSpec, height: int, width: int,
                      rotation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 (H, W, 3) and id map uint16 (H, W) of the sky (id 1) and grass (id 2).

    ``rotation``: the camera's content rotation ``R`` (:mod:`tasks.synth.camera`); pixel ``d``
    then shows the world at ``R.T @ d``, so the background stays exact (and seamless) under any
    camera motion."""
    v = pixel_vectors(height, width)
    if rotation is not None:
        v = v @ np.asarray(rotation, np.float32)  # row form of R.T @ d
    z = v[..., 2]
    horizon = _HORIZON_AMPLITUDE * np.clip(spec.horizon(v), -1.7, 1.7)
    sky = z > horizon

    # sky: gradient on z (smooth at the zenith, unlike one on latitude), soft clouds on top
    t = np.clip(z, 0.0, 1.0)[..., None] ** 0.7
    sky_rgb = _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * t
    cloud = _CLOUD_MAX * _smoothstep(0.0, 1.6, spec.clouds(v))[..., None]
    sky_rgb += (_CLOUD - sky_rgb) * cloud
    # grass: gradient towards the nadir, dry patches, +-15% brightness texture
    g = np.clip(-z, 0.0, 1.0)[..., None] ** 0.7
    grass_rgb = _GRASS_NEAR + (_GRASS_NADIR - _GRASS_NEAR) * g
    coarse = spec.grass_coarse(v)
    grass_rgb += (_GRASS_DRY - grass_rgb) * (0.3 * _smoothstep(0.4, 1.6, coarse))[..., None]
    texture = 0.65 * spec.grass_fine(v) + 0.35 * coarse
    grass_rgb *= (1.0 + 0.15 * np.clip(texture / 1.5, -1.0, 1.0))[..., None]

    rgb = np.where(sky[..., None], sky_rgb, grass_rgb)
    rgb_u8 = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    ids = np.where(sky, np.uint16(SKY_ID), np.uint16(GRASS_ID)).astype(np.uint16)
    return rgb_u8, ids
