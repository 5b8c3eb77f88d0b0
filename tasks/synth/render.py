"""Rasterising a :class:`~tasks.synth.scene.SynthScene`: true spherical projection, exact GT.

An object is a planar shape facing the camera at its centre direction ``c``. A pixel with unit
vector ``v`` sees the object's plane at the gnomonic (tangent-plane) coordinates
``(v.e1 / v.c, v.e2 / v.c)`` (valid where ``v.c > 0``), which is the central projection a real
360 camera performs; testing the shape there makes an object near a pole stretch across many
columns, and one on the seam wrap, with no special case.

Each object is evaluated only inside the ERP window that bounds its spherical cap: a latitude
band, and a longitude range that may wrap across the seam (columns taken modulo W) or, for a cap
containing a pole, covers every column. Pixels are sampled at their centres with no
antialiasing, so the RGB frame and the GT id map agree pixel for pixel.

Objects are planar and face the camera, so each has one depth per frame; drawing them far to
near (painter's order, ties by track id) is exactly a z-buffer, and the id map holds what is
visible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from tasks.geometry.erp import unit_vectors as pixel_vectors
from tasks.synth.background import render_background
from tasks.synth.look import light_gain
from tasks.synth.motion import Pose, rotate_pose
from tasks.synth.scene import SynthObject, SynthScene
from tasks.synth.shapes import Shape


@dataclass(frozen=True)
class Footprint:
    """Pixels of one object in one frame, before occlusion.

    ``rows``/``cols`` are the global ERP indices of the pixels inside the shape; ``p``/``q`` are
    their tangent-plane coordinates in units of the bounding radius (the texture lives there).
    """

    rows: np.ndarray
    cols: np.ndarray
    p: np.ndarray
    q: np.ndarray

    @property
    def size(self) -> int:
        return int(self.rows.size)


def window(pose: Pose, height: int, width: int) -> tuple[int, int, np.ndarray]:
    """Rows ``[r0, r1]`` and the column indices (ascending modulo W, so possibly wrapping)
    whose pixel centres can fall inside the pose's bounding cap; one pixel of slack each side."""
    rho = pose.radius
    top, bottom = pose.lat + rho, pose.lat - rho
    r0 = max(0, math.ceil((math.pi / 2 - top) / math.pi * height - 0.5) - 1)
    r1 = min(height - 1, math.floor((math.pi / 2 - bottom) / math.pi * height - 0.5) + 1)
    all_cols = np.arange(width)
    if top >= math.pi / 2 or bottom <= -math.pi / 2:
        return r0, r1, all_cols  # the cap holds a pole: it spans every longitude
    x = math.sin(rho) / math.cos(pose.lat)
    if x >= 1.0:
        return r0, r1, all_cols
    half = math.asin(x) / (2 * math.pi) * width
    xc = (pose.lon + math.pi) / (2 * math.pi) * width - 0.5  # unwrapped: may lie outside [0, W)
    x0, x1 = math.floor(xc - half) - 1, math.ceil(xc + half) + 1
    if x1 - x0 + 1 >= width:
        return r0, r1, all_cols
    return r0, r1, np.arange(x0, x1 + 1) % width


def footprint(shape: Shape, pose: Pose, height: int, width: int) -> Footprint:
    """Where a shape at ``pose`` covers the ERP frame (pixel centres, no antialiasing)."""
    r0, r1, cols = window(pose, height, width)
    v = pixel_vectors(height, width)
    c0 = int(cols[0])
    if cols[-1] - c0 == cols.size - 1:  # contiguous: a view, no gather
        vw = v[r0:r1 + 1, c0:c0 + cols.size]
    else:
        vw = v[r0:r1 + 1][:, cols]
    loc = vw @ pose.frame().astype(np.float32)  # (h, w, 3): v.c, v.e1, v.e2
    d = loc[..., 0]
    front = d > 1e-6
    denom = np.where(front, d * np.float32(pose.tan_radius), np.float32(1.0))
    p = loc[..., 1] / denom
    q = loc[..., 2] / denom
    inside = front & shape.inside(p, q)
    ys, xs = np.nonzero(inside)
    return Footprint(ys + r0, cols[xs], p[ys, xs], q[ys, xs])


def object_mask(obj: SynthObject, s: float, height: int, width: int, pose: Pose | None = None) -> np.ndarray | None:
    """The object's full mask at time ``s`` as if nothing were in front of it (None while it is
    absent). ``pose`` overrides the trajectory, e.g. to compare the same object at the equator."""
    pose = pose if pose is not None else obj.pose(s)
    if pose is None:
        return None
    fp = footprint(obj.shape, pose, height, width)
    mask = np.zeros((height, width), bool)
    mask[fp.rows, fp.cols] = True
    return mask


def _paint(obj: SynthObject, fp: Footprint, rgb: np.ndarray, ids: np.ndarray) -> None:
    # value modulation only: the hue stays put, so a plain object remains one colour cluster; a
    # rich look (moving-camera clips) gives several colours under the same modulation
    factor = 1.0 + np.float32(obj.texture_strength) * obj.texture(fp.p, fp.q)
    base = np.asarray(obj.rgb, np.float32)[None, :] if obj.look is None else obj.look(fp.p, fp.q)
    col = base * factor[:, None]
    rgb[fp.rows, fp.cols] = np.clip(np.rint(col), 0, 255).astype(np.uint8)
    ids[fp.rows, fp.cols] = obj.track_id


def render_frame(scene: SynthScene, frame: int,
                 background: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One frame as (rgb uint8 (H, W, 3), id map uint16 (H, W)).

    Still camera: over ``background`` (precomputed once per clip; computed here if None). Moving
    camera: the background and every pose are seen through the frame's rotation (both are
    functions of the direction, so the id map stays exact), then the lighting is applied."""
    if not 0 <= frame < scene.n_frames:
        raise IndexError(f"frame {frame} outside the clip's {scene.n_frames} frames")
    s = scene.s_of(frame)
    R = None if scene.camera is None else scene.camera.rotations[frame]
    if R is not None or background is None:
        background = render_background(scene.background, scene.height, scene.width, rotation=R)
    rgb = background[0].copy()
    ids = background[1].copy()
    posed = [(o, p if R is None else rotate_pose(p, R)) for o in scene.objects if (p := o.pose(s)) is not None]
    posed.sort(key=lambda op: (-op[1].distance, -op[0].track_id))  # far first; near wins ties
    for obj, pose in posed:
        fp = footprint(obj.shape, pose, scene.height, scene.width)
        if fp.size:
            _paint(obj, fp, rgb, ids)
    return light_gain(scene.lighting, rgb, s), ids


def render_frames(scene: SynthScene, progress: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rgb, idmap)`` for every frame; each pair is a fresh array the caller may keep.

    With a still camera the background is computed once and reused for every frame."""
    background = None if scene.camera is not None else render_background(scene.background, scene.height, scene.width)
    bar = tqdm(total=scene.n_frames, desc="synth", unit="frame", disable=not progress or None)
    try:
        for f in range(scene.n_frames):
            yield render_frame(scene, f, background)
            bar.update(1)
    finally:
        bar.close()
