"""Scenario design: which objects a synthetic clip holds, where they go, and why that is safe.

Every clip is built to exercise the 360-specific failure modes of a labeling pipeline, so the
ground truth always contains (with ``objects >= 5``):

* ``seam``: an object that starts on one side of the left/right border and crosses it; in the
  frame of the crossing its centre sits exactly on the seam, so its mask touches both borders;
* ``pole``: an object that climbs to |lat| >= 71 deg, where the ERP stretches it across many
  columns (the renderer projects it truly, see :mod:`tasks.synth.render`);
* ``appears``: an object absent for the first ~third of the clip that then approaches from far
  away (grows from a point to full size in ~0.3 s);
* ``occluded``/``occluder``: a near object passes exactly over the centre of a far one; the
  occluder is compact and larger, so it hides well over 40% of the far object in that frame.

With fewer objects the roles are filled in that order (seam, pole, appears, then the occlusion
pair, which needs two: with 4 objects the fourth is a free mover); with more, the extra objects
are free movers ("extra").

The key frame of each event is snapped to an actual frame, so the guarantee holds for any
duration and frame rate (from 3 frames on; below ~8 frames the motion is too coarse to be
useful). Role objects live in separate longitude sectors (seam at 180, the others at -90, 0
and 90 in random order) and the builder *checks* that no two objects' bounding caps ever come
within a margin of each other (except the occlusion pair), re-sampling if they do, so no event
can be spoiled by an accidental overlap. Everything is drawn from generators seeded by ``seed``
alone (separate streams for the background, the scenario, the extras and the looks, so asking
for more objects keeps the rest of the clip): the same arguments always give the same scene.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace

import numpy as np

from tasks.formats.ytvis import TrackInfo
from tasks.synth.background import GRASS_ID, SKY_ID, BackgroundSpec
from tasks.synth.camera import CAMERAS, CameraPath, camera_path, with_yaw_offset
from tasks.synth.look import Lighting, RichLook
from tasks.synth.motion import Path, Pose, arc_deg, rotate_pose, wrap_deg
from tasks.synth.noise import PlaneTexture
from tasks.synth.shapes import Shape, random_shape
from tasks.vocabulary import master

#: roles in the order they are filled when fewer than 5 objects are asked for
ROLE_ORDER = ("seam", "pole", "appears", "occluded", "occluder")
FIRST_OBJECT_ID = 3  # 1 and 2 are the sky and the grass

#: object colours: saturated hues far from sky blue and grass green and from each other, so a
#: colour-based segmenter can tell every object from its surroundings. No white or grey: a pale
#: blob in the sky is a cloud to any colour-based labeler, and the benchmark should measure
#: tracking, seam and pole handling, not that ambiguity.
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (206, 38, 42)),
    ("orange", (240, 132, 28)),
    ("yellow", (236, 210, 38)),
    ("magenta", (214, 48, 176)),
    ("purple", (118, 46, 162)),
    ("salmon", (250, 120, 100)),
    ("brown", (128, 74, 36)),
    ("pink", (246, 152, 186)),
)

#: vocabulary *thing* classes that plausibly have each outline
CATEGORIES: dict[str, tuple[str, ...]] = {
    "disc": ("ball", "frisbee", "clock"),
    "ellipse": ("boat", "animal", "bird", "person"),
    "rounded_rect": ("car", "suitcase", "signboard", "bus"),
    "star": ("kite", "flower", "umbrella"),
}

MIN_FRAMES = 3
MIN_WIDTH = 64
_MAX_ROLE_TRIES = 500
_MAX_EXTRA_TRIES = 40
_GRID = 241  # samples of s for the separation check (plus every event frame)


@dataclass(frozen=True, eq=False)
class SynthObject:
    """One textured planar object and its motion.

    ``radius_deg`` is the bounding angular radius at full size; an ``appears`` object is absent
    until ``appear_at`` and then grows over ``grow`` (both in normalised time) as if it
    approached from infinity: its apparent size scales like 1/distance.
    """

    track_id: int
    role: str
    category: str
    shape: Shape
    colour_name: str
    rgb: tuple[int, int, int]
    texture: PlaneTexture
    texture_strength: float
    path: Path
    radius_deg: float
    distance: float
    roll_deg: float = 0.0
    spin_deg: float = 0.0
    appear_at: float | None = None
    grow: float = 0.0
    look: RichLook | None = None  # multi-coloured surface (moving-camera clips); None: one colour

    def scale(self, s: float) -> float:
        if self.appear_at is None:
            return 1.0
        if s <= self.appear_at:
            return 0.0
        x = 1.0 if self.grow <= 0 else min((s - self.appear_at) / self.grow, 1.0)
        return 1.0 - (1.0 - x) ** 2

    def pose(self, s: float) -> Pose | None:
        """The object's pose at normalised time ``s``, or None while it is not in the scene."""
        k = self.scale(s)
        if k <= 0.0:
            return None
        lon, lat = self.path.at(s)
        return Pose(
            lon=math.radians(lon), lat=math.radians(lat), roll=math.radians(self.roll_deg + self.spin_deg * s),
            tan_radius=math.tan(math.radians(self.radius_deg)) * k, distance=self.distance / k,
        )

    def describe(self) -> dict:
        return {
            "track_id": self.track_id, "role": self.role, "category": self.category, "shape": self.shape.describe(),
            "colour": self.colour_name, "rgb": list(self.rgb), "radius_deg": round(self.radius_deg, 3),
            "distance": round(self.distance, 3), "texture_strength": round(self.texture_strength, 3),
        } | ({} if self.look is None else self.look.describe())


@dataclass(frozen=True, eq=False)
class SynthScene:
    """Everything needed to render a clip; frames are a pure function of this object."""

    seconds: float
    fps: float
    width: int
    height: int
    seed: int
    n_frames: int
    background: BackgroundSpec
    objects: tuple[SynthObject, ...]
    events: dict[str, int] = field(default_factory=dict)
    camera: CameraPath | None = None  # None: the still camera of the original clips
    lighting: Lighting | None = None
    jpeg_quality: int | None = None  # a JPEG round trip before encoding (compression artefacts)

    def s_of(self, frame: int) -> float:
        """Normalised time of a frame: 0 at the first frame, 1 at the last."""
        return frame / (self.n_frames - 1)

    @property
    def roles(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"background": [SKY_ID, GRASS_ID]}
        for o in self.objects:
            out.setdefault(o.role, []).append(o.track_id)
        return out

    def object(self, track_id: int) -> SynthObject:
        for o in self.objects:
            if o.track_id == track_id:
                return o
        raise KeyError(f"no object with track id {track_id}")

    def tracks(self) -> dict[int, TrackInfo]:
        prov = {"source": "synth", "seed": self.seed}
        out = {
            SKY_ID: TrackInfo(SKY_ID, "sky", dict(prov, role="background")),
            GRASS_ID: TrackInfo(GRASS_ID, "grass", dict(prov, role="background")),
        }
        for o in self.objects:
            out[o.track_id] = TrackInfo(o.track_id, o.category, dict(prov, role=o.role, shape=o.shape.kind,
                                                                      colour=o.colour_name))
        return out

    def describe(self) -> dict:
        """Scenario metadata for the ground truth's video entry (``VideoInfo.extra["synth"]``)."""
        out = {
            "generator": "tasks.synth", "seed": self.seed, "objects": len(self.objects),
            "seconds": self.seconds, "fps": self.fps, "frames": self.n_frames,
            "roles": self.roles, "events": dict(self.events),
            "object_specs": [o.describe() for o in self.objects],
        }
        if self.camera is not None:  # absent for still clips: their GT stays as it was
            out["camera"] = self.camera.describe() | {
                "rotations": np.round(self.camera.rotations, 9).tolist()}
            out["lighting"] = None if self.lighting is None else {
                "amplitude": round(self.lighting.amp, 4), "cycles": round(self.lighting.cycles, 4)}
            out["jpeg_quality"] = self.jpeg_quality
        return out


# -- argument checks ---------------------------------------------------------------------------
def _check_args(seconds, fps, width, seed, objects) -> int:
    def is_int(x) -> bool:
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    def is_real(x) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool)

    if not is_int(width) or width < MIN_WIDTH or width % 2:
        raise ValueError(f"width must be an even integer >= {MIN_WIDTH} (the ERP height is width/2), got {width!r}")
    if not is_real(seconds) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
    if not is_real(fps) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    if not is_int(objects) or objects < 0:
        raise ValueError(f"objects must be an integer >= 0, got {objects!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    n = int(round(seconds * fps))
    if n < MIN_FRAMES:
        raise ValueError(f"seconds * fps must give at least {MIN_FRAMES} frames, got {seconds} s at {fps} fps = {n}")
    return n


# -- geometry drafts ---------------------------------------------------------------------------
@dataclass
class _Draft:
    """Where an object goes, before it is given a look (shape, colour, class)."""

    role: str
    path: Path
    radius_deg: float
    distance: float
    spin_deg: float = 0.0
    appear_at: float | None = None
    grow: float = 0.0
    solid: bool = False  # needs a compact shape (occluder)


@dataclass(frozen=True)
class _Clip:
    n: int
    width: int
    fps: float

    def s(self, f: int) -> float:
        return f / (self.n - 1)

    def snap(self, target: float) -> int:
        """The frame nearest to ``target`` (normalised time), never the first or last one, so
        an event always has frames before and after it."""
        f = int(round(target * (self.n - 1)))
        return min(max(f, 1), self.n - 2)

    @property
    def duration(self) -> float:
        return (self.n - 1) / self.fps

    @property
    def margin_deg(self) -> float:
        """Clearance between objects and from the seam: 2 deg, or two pixels on coarse frames."""
        return max(2.0, 2 * 360.0 / self.width)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _lon_halfwidth(radius_deg: float, lat_deg: float) -> float:
    """Half the longitude span of a spherical cap (degrees) whose centre is at ``lat_deg``."""
    x = math.sin(math.radians(radius_deg)) / math.cos(math.radians(lat_deg))
    return 180.0 if x >= 1 else math.degrees(math.asin(x))


def _seam(rng, clip: _Clip, events: dict) -> _Draft:
    radius = _u(rng, 8, 13)
    lat0 = _u(rng, -14, 14)
    lat1 = float(np.clip(lat0 + _u(rng, -6, 6), -15, 15))
    half = _lon_halfwidth(radius, max(abs(lat0), abs(lat1)))
    f = clip.snap(_u(rng, 0.4, 0.6))
    s_c = clip.s(f)
    lead = half + clip.margin_deg + _u(rng, 1, 5)  # clear of the seam at s = 0
    speed = lead / s_c
    d = _sign(rng)
    events["seam_cross"] = f
    return _Draft("seam", Path.linear(180.0 - d * lead, lat0, 180.0 + d * speed * (1 - s_c), lat1),
                  radius, _u(rng, 5, 15))


def _pole(rng, clip: _Clip, events: dict, lon: float) -> _Draft:
    sign = _sign(rng)
    radius = _u(rng, 9, 14)
    lat0, peak, drop = _u(rng, 24, 32), _u(rng, 71, 76), _u(rng, 8, 14)
    f = clip.snap(_u(rng, 0.65, 0.8))
    s_p = clip.s(f)
    drift = _u(rng, -8, 8)
    lons = (lon - drift / 2, lon - drift / 2 + drift * s_p, lon + drift / 2)
    events["pole_peak"] = f
    path = Path((0.0, s_p, 1.0), lons, (sign * lat0, sign * peak, sign * (peak - drop)), ("out", "in"))
    return _Draft("pole", path, radius, _u(rng, 5, 15))


def _appears(rng, clip: _Clip, events: dict, lon: float) -> _Draft:
    radius = _u(rng, 9, 15)
    lat0 = _u(rng, -14, 14)
    d = _sign(rng)
    path = Path.linear(lon - d * _u(rng, 4, 10), lat0, lon + d * _u(rng, 4, 10), lat0 + _u(rng, -5, 5))
    f = clip.snap(_u(rng, 0.32, 0.38))
    events["appear"] = f  # the last frame without the object
    grow = min(0.3 / clip.duration, 0.2)
    return _Draft("appears", path, radius, _u(rng, 5, 10), appear_at=clip.s(f), grow=grow)


def _occlusion(rng, clip: _Clip, events: dict, lon: float) -> tuple[_Draft, _Draft]:
    r_far = _u(rng, 7, 10)
    r_near = r_far * _u(rng, 1.2, 1.4)
    lon0, lat0 = lon + _u(rng, -4, 4), _u(rng, -8, 12)
    lon1, lat1 = lon0 + _u(rng, -3, 3), lat0 + _u(rng, -2, 2)
    far = Path.linear(lon0, lat0, lon1, lat1)
    f = clip.snap(_u(rng, 0.45, 0.55))
    s_o = clip.s(f)
    lon_m, lat_m = far.at(s_o)
    # fast enough that the two are apart at both ends of the clip: the far object is seen
    # whole before and after, which is what makes the drop an occlusion and not a shape
    clearance = r_far + r_near + clip.margin_deg + _u(rng, 1, 4)
    speed = clearance / min(s_o, 1 - s_o)
    beta, d = math.radians(_u(rng, -35, 35)), _sign(rng)
    dlon = d * speed * math.cos(beta) / math.cos(math.radians(lat_m))
    dlat = d * speed * math.sin(beta)
    # the near object is the far one's path plus a straight pass that is zero at s_o: both
    # are linear, so the centres coincide exactly in the event frame
    near = Path.linear(lon0 - dlon * s_o, lat0 - dlat * s_o, lon1 + dlon * (1 - s_o), lat1 + dlat * (1 - s_o))
    events["occlusion"] = f
    return (_Draft("occluded", far, r_far, _u(rng, 9, 14)),
            _Draft("occluder", near, r_near, _u(rng, 3, 6), solid=True))


def _extra(rng, band_sign: int | None = None) -> _Draft:
    """A free mover; with ``band_sign`` it is kept to the polar band at lat 62..72 on that
    side, which no role object reaches (the fallback when the sphere is crowded)."""
    radius = _u(rng, 7, 12)
    if band_sign is None:
        lon0, lat0 = _u(rng, -180, 180), _u(rng, -50, 50)
        heading, travel = _u(rng, 0, 2 * math.pi), _u(rng, 15, 50)
        lat1 = float(np.clip(lat0 + travel * math.sin(heading), -60, 60))
        lon1 = lon0 + travel * math.cos(heading) / math.cos(math.radians(0.5 * (lat0 + lat1)))
    else:
        a = _u(rng, 62, 72)
        b = float(np.clip(a + _u(rng, -3, 3), 62, 72))
        lat0, lat1 = band_sign * a, band_sign * b
        lon0 = _u(rng, -180, 180)
        lon1 = lon0 + _sign(rng) * _u(rng, 10, 40)
    return _Draft("extra", Path.linear(lon0, lat0, lon1, lat1), radius, _u(rng, 4, 16), spin_deg=_u(rng, -90, 90))


# -- separation check --------------------------------------------------------------------------
class _Track:
    """An object's bounding cap sampled on the check grid (full radius whenever present)."""

    def __init__(self, draft: _Draft, grid: np.ndarray):
        self.present = np.array([draft.appear_at is None or s > draft.appear_at for s in grid])
        lonlat = np.radians(np.array([draft.path.at(s) for s in grid]))
        cl = np.cos(lonlat[:, 1])
        self.v = np.stack([cl * np.cos(lonlat[:, 0]), cl * np.sin(lonlat[:, 0]), np.sin(lonlat[:, 1])], axis=1)
        self.radius = math.radians(draft.radius_deg)


def _clear(a: _Track, b: _Track, margin: float) -> bool:
    both = a.present & b.present
    if not both.any():
        return True
    va, vb = a.v[both], b.v[both]
    ang = np.arctan2(np.linalg.norm(np.cross(va, vb), axis=1), np.einsum("ij,ij->i", va, vb))
    return bool(ang.min() - a.radius - b.radius >= margin)


def _grid(clip: _Clip, events: dict) -> np.ndarray:
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, _GRID), [clip.s(f) for f in events.values()]]))


def _sample_roles(rng, clip: _Clip, count: int) -> tuple[list[_Draft], dict]:
    margin = math.radians(clip.margin_deg)
    for _ in range(_MAX_ROLE_TRIES):
        events: dict[str, int] = {}
        sectors = [float(x) + _u(rng, -6, 6) for x in rng.permutation([-90.0, 0.0, 90.0])]
        drafts: list[_Draft] = []
        if count >= 1:
            drafts.append(_seam(rng, clip, events))
        if count >= 2:
            drafts.append(_pole(rng, clip, events, sectors[0]))
        if count >= 3:
            drafts.append(_appears(rng, clip, events, sectors[1]))
        if count >= 5:
            drafts.extend(_occlusion(rng, clip, events, sectors[2]))
        grid = _grid(clip, events)
        tracks = [_Track(d, grid) for d in drafts]
        ok = all(
            _clear(tracks[i], tracks[j], margin)
            for i in range(len(drafts)) for j in range(i + 1, len(drafts))
            if {drafts[i].role, drafts[j].role} != {"occluded", "occluder"}
        )
        if ok:
            return drafts, events
    raise RuntimeError("could not lay out the scenario objects without overlaps; this is a bug in tasks.synth")


def _sample_extras(rng, clip: _Clip, roles: list[_Draft], events: dict, count: int) -> list[_Draft]:
    margin = math.radians(clip.margin_deg)
    grid = _grid(clip, events)
    fixed = [_Track(d, grid) for d in roles]
    pole = next((d for d in roles if d.role == "pole"), None)
    band = -1 if pole is None or pole.path.lat[1] > 0 else 1
    placed: list[_Track] = []
    out: list[_Draft] = []
    for _ in range(count):
        for _try in range(_MAX_EXTRA_TRIES):
            d = _extra(rng)
            t = _Track(d, grid)
            if all(_clear(t, o, margin) for o in fixed + placed):
                break
        else:
            # the sphere is crowded: fall back to the free polar band; extras may overlap each
            # other there (the z-order decides), never a role object
            for _try in range(_MAX_EXTRA_TRIES):
                d = _extra(rng, band)
                t = _Track(d, grid)
                if all(_clear(t, o, margin) for o in fixed):
                    break
            else:
                raise RuntimeError("could not place an extra object clear of the scenario objects; "
                                   "this is a bug in tasks.synth")
        placed.append(t)
        out.append(d)
    return out


# -- looks -------------------------------------------------------------------------------------
def _dress(rng, drafts: list[_Draft]) -> tuple[SynthObject, ...]:
    vocab = master()
    order = rng.permutation(len(PALETTE))
    used_names: set[str] = set()
    objs = []
    for i, d in enumerate(drafts):
        shape = random_shape(rng, solid=d.solid)
        choices = [c for c in CATEGORIES[shape.kind] if c not in used_names] or list(CATEGORIES[shape.kind])
        category = vocab.get(choices[int(rng.integers(len(choices)))]).name
        used_names.add(category)
        colour_name, rgb = PALETTE[int(order[i % len(PALETTE)])]
        if i >= len(PALETTE):  # more objects than colours: shift the repeat's brightness
            rgb = tuple(int(np.clip(c * _u(rng, 0.75, 0.9), 0, 255)) for c in rgb)
        objs.append(SynthObject(
            track_id=FIRST_OBJECT_ID + i, role=d.role, category=category, shape=shape, colour_name=colour_name,
            rgb=rgb, texture=PlaneTexture.random(rng), texture_strength=_u(rng, 0.10, 0.15), path=d.path,
            radius_deg=d.radius_deg, distance=d.distance, roll_deg=_u(rng, -180, 180), spin_deg=d.spin_deg,
            appear_at=d.appear_at, grow=d.grow,
        ))
    return tuple(objs)


def build_scene(*, seconds: float = 4.0, fps: float = 15.0, width: int = 1024, seed: int = 0,
                objects: int = 5, camera: str = "still", photos: list[np.ndarray] | None = None) -> SynthScene:
    """The scene for these arguments (deterministic); see the module docstring for its content.

    ``camera`` (:data:`tasks.synth.camera.CAMERAS`): anything but ``still`` moves the camera
    along that path (turned so the seam object is on the seam at its event frame) and gives the
    clip a real-footage look (:mod:`tasks.synth.look`: multi-coloured objects -- cut from
    ``photos`` when given --, changing light, compression). ``still`` gives exactly the clips of
    earlier versions for the same seed.

    Raises ValueError for arguments that cannot make a clip (odd or tiny width, non-positive
    duration or frame rate, negative object count or seed, fewer than 3 frames, unknown camera).
    """
    n = _check_args(seconds, fps, width, seed, objects)
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
    clip = _Clip(n, int(width), float(fps))
    # independent streams, so that e.g. asking for more objects keeps the background and the
    # scenario objects of the same seed
    bg_seq, role_seq, extra_seq, look_seq = np.random.SeedSequence([int(seed), 360]).spawn(4)
    background = BackgroundSpec.random(np.random.default_rng(bg_seq))
    n_roles = min(objects, len(ROLE_ORDER))
    if n_roles == 4:
        n_roles = 3  # the occlusion pair needs two objects: the fourth becomes a free mover
    drafts, events = _sample_roles(np.random.default_rng(role_seq), clip, n_roles)
    drafts += _sample_extras(np.random.default_rng(extra_seq), clip, drafts, events, objects - n_roles)
    scene = SynthScene(
        seconds=float(seconds), fps=float(fps), width=int(width), height=int(width) // 2, seed=int(seed),
        n_frames=n, background=background, objects=_dress(np.random.default_rng(look_seq), drafts),
        events=events,
    )
    if camera == "still":
        return scene
    # a stream of its own: the still clip of a seed is the moving one's scene, camera aside
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 360, 1]))
    objs = tuple(replace(o, look=RichLook.random(rng, photos)) for o in scene.objects)
    path = camera_path(camera, n, float(fps), int(seed))
    path = _seam_on_seam(path, scene, events)
    return replace(scene, objects=objs, camera=path, lighting=Lighting.random(rng),
                   jpeg_quality=int(rng.integers(55, 76)))


def _seam_on_seam(path: CameraPath, scene: SynthScene, events: dict) -> CameraPath:
    """Turn the camera path about the vertical so that the seam object's centre is on the seam
    in its event frame, as with the still camera: the seam crossing stays in every clip."""
    seam = next((o for o in scene.objects if o.role == "seam"), None)
    if seam is None or "seam_cross" not in events:
        return path
    f = events["seam_cross"]
    pose = seam.pose(scene.s_of(f))
    offset = 0.0
    for _ in range(8):  # pitch and roll make the longitude slightly non-linear in the offset
        p = with_yaw_offset(path, offset)
        lon = math.degrees(rotate_pose(pose, p.rotations[f]).lon)
        err = wrap_deg(180.0 - lon)
        if abs(err) < 1e-7:
            break
        offset += err
    return with_yaw_offset(path, offset)


def max_step_deg(scene: SynthScene) -> float:
    """Largest arc (degrees) any object centre moves between two consecutive frames: the
    quantity that decides whether optical flow can follow the clip."""
    worst = 0.0
    for o in scene.objects:
        prev = None
        for f in range(scene.n_frames):
            p = o.pose(scene.s_of(f))
            c = p.centre() if p is not None else None
            if prev is not None and c is not None:
                worst = max(worst, arc_deg(prev, c))
            prev = c
    return worst
