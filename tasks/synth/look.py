"""Realistic looks for moving-camera clips: multi-coloured objects, changing light, compression.

Real objects are not one flat colour (issue 10: outlines snapped to an object's *mean* colour
cut off its differently coloured parts), real light changes (clouds, auto-exposure) and real
footage is compressed. A clip with a moving camera gets all three; the still-camera clips keep
their plain look, so their benchmark rows stay comparable with earlier runs.

* :class:`RichLook`: an object's surface in its tangent plane -- either a patch cut from a real
  photo (``photos`` given to :func:`tasks.synth.scene.build_scene`, e.g. the shared panoramas at
  benchmark time; nothing is shipped) or, without photos, three to four distinct colours in
  large irregular regions (a band of a low-frequency :class:`~tasks.synth.noise.PlaneTexture`
  each). The ground truth is the object's outline whatever its colours.
* :func:`light_gain`: a smooth global gain and colour cast over the clip (+-8..15%).
* :func:`compress`: a JPEG round trip (quality 55..75: blocking and ringing) before the H.264
  encoder, which then runs at a real-footage CRF (:data:`CRF`).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.synth.noise import PlaneTexture

CRF = 23  # libx264's default: what phones and action cameras deliver, not the near-lossless 16
PATCH = 128  # photo patch side (px): more than an object's size in a 1024-wide frame
#: hue ranges (degrees) kept for object colours: away from the sky's blue (~200-230) and the
#: grass's green (~80-140), so an object part is never the background's colour
_HUES = ((0.0, 60.0), (150.0, 185.0), (250.0, 340.0))


def _hue(rng: np.random.Generator) -> float:
    widths = np.array([b - a for a, b in _HUES])
    k = int(rng.choice(len(_HUES), p=widths / widths.sum()))
    return float(rng.uniform(*_HUES[k])) / 360.0


@dataclass(frozen=True, eq=False)
class RichLook:
    """A multi-coloured surface: ``colours`` (k, 3) float32 in regions cut from ``regions`` at
    ``cuts``; or, when ``patch`` is set, a photo patch (PATCH x PATCH x 3 uint8)."""

    colours: np.ndarray
    regions: PlaneTexture
    cuts: np.ndarray
    patch: np.ndarray | None = None

    @classmethod
    def random(cls, rng: np.random.Generator, photos: list[np.ndarray] | None = None) -> RichLook:
        k = int(rng.integers(3, 5))
        cols = []
        for _ in range(k):
            cols.append(colorsys.hsv_to_rgb(_hue(rng), float(rng.uniform(0.45, 0.9)), float(rng.uniform(0.45, 0.95))))
        colours = (np.asarray(cols, np.float32) * 255.0).astype(np.float32)
        regions = PlaneTexture.random(rng, waves=2, cycles=(0.3, 0.8))
        cuts = np.sort(rng.uniform(-0.6, 0.6, size=k - 1)).astype(np.float32)
        patch = None
        if photos:
            img = photos[int(rng.integers(len(photos)))]
            h, w = img.shape[:2]
            side = int(min(h, w) * rng.uniform(0.12, 0.25))
            # of 8 random cuts the most colourful one with the least sky or cloud in it: a patch of
            # sky would make an object the background's colour, which tests nothing an object shows
            best, best_score = None, -1.0
            for _ in range(8):
                y = int(rng.integers(int(0.2 * h), max(int(0.2 * h) + 1, int(0.8 * h) - side)))
                x = int(rng.integers(0, w - side))
                cut = img[y:y + side, x:x + side]
                px = cut.reshape(-1, 3).astype(np.float32)
                sky = ((px[:, 2] > px[:, 0] + 20) & (px[:, 2] >= px[:, 1])) | (px.min(axis=1) > 190)
                score = float(px.std(axis=0).sum()) * (1.0 - float(sky.mean()))
                if score > best_score:
                    best, best_score = cut, score
            patch = cv2.resize(best, (PATCH, PATCH), interpolation=cv2.INTER_AREA)
        return cls(colours, regions, cuts, patch)

    def __call__(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """RGB float32 (n, 3) at tangent-plane coordinates ``(p, q)`` (units of the radius)."""
        if self.patch is not None:
            x = np.clip((p + 1.0) * 0.5 * (PATCH - 1), 0, PATCH - 1).astype(np.int32)
            y = np.clip((1.0 - q) * 0.5 * (PATCH - 1), 0, PATCH - 1).astype(np.int32)
            return self.patch[y, x].astype(np.float32)
        band = np.searchsorted(self.cuts, self.regions(p, q))
        return self.colours[band]

    def describe(self) -> dict:
        if self.patch is not None:
            return {"look": "photo patch"}
        return {"look": "multi-colour", "colours": np.rint(self.colours).astype(int).tolist()}


def load_photos(paths: list[str | Path]) -> list[np.ndarray]:
    """RGB images to cut object textures from (a top-bottom stereo image gives its top eye)."""
    out = []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read photo {p}")
        if bgr.shape[0] == bgr.shape[1]:  # top-bottom stereo: the top eye
            bgr = bgr[: bgr.shape[0] // 2]
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


@dataclass(frozen=True)
class Lighting:
    """Global gain ``1 + amp * sin(2 pi (cycles * s) + phase)`` and a colour cast that drifts
    with it (s = normalised clip time)."""

    amp: float
    cycles: float
    phase: float
    cast: tuple[float, float, float]

    @classmethod
    def random(cls, rng: np.random.Generator) -> Lighting:
        cast = tuple(float(x) for x in rng.uniform(-0.04, 0.04, size=3))
        return cls(float(rng.uniform(0.08, 0.15)), float(rng.uniform(0.5, 1.2)), float(rng.uniform(0, 2 * math.pi)),
                   cast)

    def gain(self, s: float) -> np.ndarray:
        w = math.sin(2 * math.pi * self.cycles * s + self.phase)
        return (1.0 + self.amp * w) * (1.0 + w * np.asarray(self.cast, np.float32))

    def apply(self, rgb: np.ndarray, s: float) -> np.ndarray:
        return np.clip(rgb.astype(np.float32) * self.gain(s)[None, None, :], 0, 255).astype(np.uint8)


def light_gain(lighting: Lighting | None, rgb: np.ndarray, s: float) -> np.ndarray:
    return rgb if lighting is None else lighting.apply(rgb, s)


def compress(rgb: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at ``quality``: the blocking and ringing of real compressed footage."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a frame")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
