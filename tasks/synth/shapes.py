"""Planar object outlines, tested in an object's tangent plane.

Coordinates ``(p, q)`` are in units of the object's *bounding* radius: every shape lies inside
the unit disc, so the renderer can bound its work by the object's angular radius and the scene
builder can prove two objects never touch by comparing bounding radii alone.

All shapes are star-shaped around the centre with fat features (no needle-thin spikes), so a
rasterised mask is one connected component at the resolutions the tests use; a seam-crossing
object that fell apart into islands would make the wrap-aware checks meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("disc", "ellipse", "rounded_rect", "star")


@dataclass(frozen=True)
class Shape:
    kind: str
    aspect: float = 1.0  # ellipse: minor/major; rounded_rect: height/width
    corner: float = 0.0  # rounded_rect: corner radius as a fraction of the half-height
    lobes: int = 0  # star
    depth: float = 0.0  # star: how far the notches between lobes reach in (fraction of radius)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown shape kind {self.kind!r} (known: {', '.join(KINDS)})")

    def _rect(self) -> tuple[float, float, float]:
        """Half-width, half-height and corner radius scaled so the farthest point is at 1."""
        a, k = self.aspect, self.corner
        ax = 1.0 / (np.hypot(1 - a * k, a * (1 - k)) + a * k)
        ay = a * ax
        return ax, ay, k * ay

    def inscribed_radius(self) -> float:
        """Radius of the largest centred disc inside the shape: what an occluder of this shape
        is guaranteed to hide when it sits on top of another object's centre."""
        if self.kind == "disc":
            return 1.0
        if self.kind == "ellipse":
            return self.aspect
        if self.kind == "rounded_rect":
            return self._rect()[1]
        return 1.0 - self.depth

    def inside(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        if self.kind == "disc":
            return p * p + q * q <= 1.0
        if self.kind == "ellipse":
            return p * p + (q * q) / (self.aspect * self.aspect) <= 1.0
        if self.kind == "rounded_rect":
            ax, ay, r = self._rect()
            ap, aq = np.abs(p), np.abs(q)
            dx = ap - (ax - r)
            dy = aq - (ay - r)
            corner = (dx > 0) & (dy > 0) & (dx * dx + dy * dy > r * r)
            return (ap <= ax) & (aq <= ay) & ~corner
        # star: a flower-like outline r <= 1 - depth * (1 - cos(n theta)) / 2
        rr = np.hypot(p, q)
        theta = np.arctan2(q, p)
        return rr <= 1.0 - self.depth * 0.5 * (1.0 - np.cos(self.lobes * theta))

    def describe(self) -> dict:
        d: dict = {"kind": self.kind}
        if self.kind in ("ellipse", "rounded_rect"):
            d["aspect"] = round(self.aspect, 4)
        if self.kind == "rounded_rect":
            d["corner"] = round(self.corner, 4)
        if self.kind == "star":
            d["lobes"] = self.lobes
            d["depth"] = round(self.depth, 4)
        return d


def random_shape(rng: np.random.Generator, *, solid: bool = False) -> Shape:
    """A random outline; ``solid`` restricts to compact shapes whose inscribed disc is at least
    0.8 of the bounding radius (occluders must cover what they pass over)."""
    if solid:
        kind = ("disc", "ellipse", "rounded_rect")[int(rng.integers(3))]
        if kind == "disc":
            return Shape("disc")
        if kind == "ellipse":
            return Shape("ellipse", aspect=float(rng.uniform(0.82, 0.95)))
        # a near-square with generous corners: inscribed radius ~0.72..0.8 of the bound
        return Shape("rounded_rect", aspect=float(rng.uniform(0.88, 1.0)), corner=float(rng.uniform(0.35, 0.55)))
    kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind == "disc":
        return Shape("disc")
    if kind == "ellipse":
        return Shape("ellipse", aspect=float(rng.uniform(0.6, 0.85)))
    if kind == "rounded_rect":
        return Shape("rounded_rect", aspect=float(rng.uniform(0.55, 0.85)), corner=float(rng.uniform(0.2, 0.45)))
    return Shape("star", lobes=int(rng.integers(5, 8)), depth=float(rng.uniform(0.2, 0.32)))
