"""Scene design: argument checks, determinism, role filling, motion limits, labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.synth import SynthScene, build_scene
from tasks.synth.motion import Path, ease
from tasks.synth.scene import PALETTE, max_step_deg
from tasks.synth.shapes import Shape
from tasks.vocabulary import master


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"width": 255}, "width must be an even integer"),
        ({"width": 62}, "width must be an even integer >= 64"),
        ({"width": 256.0}, "width must be an even integer"),
        ({"seconds": 0}, "seconds must be a finite number > 0"),
        ({"seconds": -1.0}, "seconds must be"),
        ({"seconds": float("nan")}, "seconds must be"),
        ({"fps": 0.0}, "fps must be a finite number > 0"),
        ({"fps": float("inf")}, "fps must be"),
        ({"objects": -1}, "objects must be an integer >= 0"),
        ({"objects": 2.5}, "objects must be an integer"),
        ({"seed": -3}, "seed must be an integer >= 0"),
        ({"seconds": 0.1, "fps": 10.0}, "at least 3 frames"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs, needle):
    args = {"width": 256, **kwargs}
    with pytest.raises(ValueError, match=needle):
        build_scene(**args)


def test_scene_is_deterministic_and_seed_dependent():
    a = build_scene(width=256, seed=7)
    b = build_scene(width=256, seed=7)
    c = build_scene(width=256, seed=8)
    assert isinstance(a, SynthScene)
    assert a.events == b.events
    for oa, ob in zip(a.objects, b.objects):
        assert oa.describe() == ob.describe()
        assert oa.path == ob.path
    assert [o.describe() for o in a.objects] != [o.describe() for o in c.objects]


@pytest.mark.parametrize(
    ("objects", "roles"),
    [
        (0, []),
        (1, ["seam"]),
        (2, ["seam", "pole"]),
        (3, ["seam", "pole", "appears"]),
        (4, ["seam", "pole", "appears", "extra"]),
        (5, ["seam", "pole", "appears", "occluded", "occluder"]),
        (8, ["seam", "pole", "appears", "occluded", "occluder", "extra", "extra", "extra"]),
    ],
)
def test_roles_are_filled_in_order(objects, roles):
    sc = build_scene(width=128, seconds=1.0, objects=objects)
    assert [o.role for o in sc.objects] == roles
    assert [o.track_id for o in sc.objects] == list(range(3, 3 + objects))
    assert sc.roles["background"] == [1, 2]
    assert sc.n_frames == 15 and sc.height == 64


def test_more_objects_keep_the_scenario_of_the_seed():
    few = build_scene(width=256, seed=3, objects=5)
    many = build_scene(width=256, seed=3, objects=9)
    assert few.events == many.events
    for a, b in zip(few.objects, many.objects):
        assert a.path == b.path and a.radius_deg == b.radius_deg


@pytest.mark.parametrize("seed", range(5))
def test_motion_is_moderate_at_default_timing(seed):
    sc = build_scene(width=256, seed=seed)
    assert sc.n_frames == 60
    assert max_step_deg(sc) <= 2.0


@pytest.mark.parametrize("seed", range(5))
def test_objects_have_vocabulary_things_distinct_colours_and_sizes(seed):
    sc = build_scene(width=256, seed=seed, objects=6)
    vocab = master()
    tracks = sc.tracks()
    assert tracks[1].category == "sky" and tracks[2].category == "grass"
    for o in sc.objects:
        assert vocab.get(o.category).isthing
        assert tracks[o.track_id].category == o.category
        assert 7.0 <= o.radius_deg <= 18.0
        assert 0.10 <= o.texture_strength <= 0.15
    names = [o.colour_name for o in sc.objects]
    assert len(set(names)) == len(names)
    assert set(names) <= {n for n, _ in PALETTE}


@pytest.mark.parametrize("seed", range(5))
def test_event_frames_fall_where_the_scenario_says(seed):
    sc = build_scene(width=256, seed=seed)
    n = sc.n_frames
    ev = sc.events
    assert set(ev) == {"seam_cross", "pole_peak", "appear", "occlusion"}
    assert 0.3 <= ev["appear"] / (n - 1) <= 0.4
    assert 0 < ev["seam_cross"] < n - 1 and 0 < ev["occlusion"] < n - 1
    pole = sc.object(sc.roles["pole"][0])
    assert abs(math.degrees(pole.pose(sc.s_of(ev["pole_peak"])).lat)) >= 70.0
    # the occlusion pair: same centre in the event frame, occluder nearer and larger
    far = sc.object(sc.roles["occluded"][0]).pose(sc.s_of(ev["occlusion"]))
    near = sc.object(sc.roles["occluder"][0]).pose(sc.s_of(ev["occlusion"]))
    assert np.allclose(far.centre(), near.centre(), atol=1e-9)
    assert near.distance < far.distance and near.tan_radius > far.tan_radius


def test_easing_and_paths():
    for kind in ("linear", "out", "in"):
        assert ease(kind, 0.0) == 0.0 and ease(kind, 1.0) == pytest.approx(1.0)
        xs = np.linspace(0, 1, 101)
        ys = [ease(kind, x) for x in xs]
        assert np.all(np.diff(ys) >= -1e-12)
        assert np.max(np.diff(ys)) / 0.01 <= 4 / 3 + 1e-9  # peak speed 4/3 of the average
    p = Path.linear(170.0, 0.0, 200.0, 10.0)
    assert p.at(0.5) == pytest.approx((185.0, 5.0))  # unwrapped: crosses the seam, not the long way
    with pytest.raises(ValueError, match="off the poles"):
        Path.linear(0.0, 0.0, 0.0, 90.0)
    with pytest.raises(ValueError, match="rise strictly"):
        Path((0.0, 0.0, 1.0), (0, 1, 2), (0, 0, 0), ("linear", "linear"))


def test_shapes_fit_their_bounding_disc_and_hold_their_inscribed_disc():
    ang = np.linspace(0, 2 * np.pi, 721)
    for shape in (Shape("disc"), Shape("ellipse", aspect=0.7), Shape("rounded_rect", aspect=0.6, corner=0.4),
                  Shape("star", lobes=6, depth=0.3)):
        outside = shape.inside(1.001 * np.cos(ang), 1.001 * np.sin(ang))
        assert not outside.any(), shape
        r = shape.inscribed_radius() * 0.999
        assert shape.inside(r * np.cos(ang), r * np.sin(ang)).all(), shape
    with pytest.raises(ValueError, match="unknown shape"):
        Shape("triangle")


def test_still_camera_is_the_default_scene_and_a_moving_one_keeps_its_world():
    base = build_scene(width=256, seed=5)
    still = build_scene(width=256, seed=5, camera="still")
    moving = build_scene(width=256, seed=5, camera="pan")
    assert still.camera is None and still.lighting is None and still.jpeg_quality is None
    assert "camera" not in still.describe() and still.describe() == base.describe()
    # same objects, paths and events; only the camera and the looks differ
    assert moving.events == base.events and moving.camera.n_frames == base.n_frames
    for a, b in zip(base.objects, moving.objects):
        assert a.path == b.path and a.look is None and b.look is not None
    d = moving.describe()
    assert d["camera"]["camera"] == "pan" and len(d["camera"]["rotations"]) == base.n_frames
    with pytest.raises(ValueError, match="camera"):
        build_scene(width=256, camera="helicopter")
