"""fuse on real frames (issue 10): a large region the voters cannot name whole is still labeled
(its voter-agreed stuff parts by class, the rest ``unknown`` for review), so coverage does not
flip with the vote's IoU; only flat nameless background is dropped."""

import cv2
import numpy as np
import pytest

from tasks.backends import build_backends
from tasks.config import PipelineConfig
from tasks.labeling.coverage import coverage
from tasks.labeling.sdr import annotate_frame
from tasks.video.frames import iter_frames
from tasks.video.framestore import decode_jpeg, encode_jpeg
from tasks.video.probe import probe
from tests.support.real_images import real_erp

CONGO = "erp_video/gvr_congo_stereo_topbottom_1920x1080_10s.mp4"


def _congo_frame0(shared_data, cfg) -> np.ndarray:
    """Frame 0 as the pipeline stores it (decode at 10 fps, 1024 wide, JPEG at the configured quality)."""
    path = shared_data / CONGO
    frames = iter_frames(path, probe(path), 1024, fps=10.0)
    try:
        rgb = next(frames)
    finally:
        frames.close()
    return decode_jpeg(encode_jpeg(rgb, cfg.video.jpeg_quality))


@pytest.fixture(scope="module")
def cfg():
    return PipelineConfig()


@pytest.mark.parametrize("name", ["congo", "erp_images/pannellum_examplepano_4096x2048.jpg",
                                  "360vot_samples/0098_000193.jpg"])
def test_real_frame_is_covered(shared_data, cfg, name):
    # before: congo frame 0 0.10 (one 0.90-of-the-sphere region, vote IoU just under 0.5, dropped
    # whole), pannellum 0.44, 0098 0.49; measured after: 1.00 on each
    rgb = _congo_frame0(shared_data, cfg) if name == "congo" else real_erp(shared_data / name)
    objs = annotate_frame(rgb, cfg, build_backends(cfg))
    assert coverage(objs.idmap, "sphere") >= 0.9
    assert objs.stats["dropped_unknown_background"] == 0
    review = [o for o in objs.objects.values() if any("review" in p for p in o["provenance"]["parts"])]
    assert all(o["category"] == "unknown" for o in review)


def test_voter_agreed_parts_of_a_large_unnamed_region_get_their_class(shared_data, cfg):
    rgb = real_erp(shared_data / "360vot_samples/0098_000193.jpg")
    objs = annotate_frame(rgb, cfg, build_backends(cfg))
    assert objs.stats["voter_named_parts"] >= 1
    parts = [p for o in objs.objects.values() for p in o["provenance"]["parts"] if p["label_how"] == "voter_parts"]
    assert parts and all(o["category"] != "unknown" for o in objs.objects.values()
                         if any(p["label_how"] == "voter_parts" for p in o["provenance"]["parts"]))


def test_flat_nameless_background_is_dropped(cfg):
    # a real object on a flat grey backdrop that covers most of the sphere: the backdrop has no
    # texture and no voter names it, so it is not a track; the textured object is kept
    rng = np.random.default_rng(0)
    frame = np.full((512, 1024, 3), 90, np.uint8)
    yy, xx = np.mgrid[0:512, 0:1024]
    disc = (yy - 256) ** 2 / 60 ** 2 + (xx - 500) ** 2 / 120 ** 2 <= 1.0
    frame[disc] = cv2.GaussianBlur(rng.integers(0, 255, (512, 1024, 3), np.uint8), (5, 5), 0)[disc]
    objs = annotate_frame(frame, cfg, build_backends(cfg))
    assert objs.stats["dropped_unknown_background"] >= 1
    assert (objs.idmap[~disc] == 0).mean() > 0.9
    assert (objs.idmap[disc] > 0).mean() > 0.8


def _sky_over_meadow(rng: np.random.Generator) -> np.ndarray:
    """A 1024x512 ERP frame: blue sky over a green meadow at the horizon, with a little noise."""
    frame = np.zeros((512, 1024, 3), np.uint8)
    frame[:256] = (70, 130, 215)
    frame[256:] = (80, 140, 50)
    return np.clip(frame.astype(np.int16) + rng.integers(-4, 5, frame.shape), 0, 255).astype(np.uint8)


def _sky_meadow_with_two_green_objects() -> tuple[np.ndarray, list[np.ndarray]]:
    """Blue sky over a green meadow, with two green textured discs in the sky (0.5% of the sphere
    each): what the CPU voters name "tree" (green above the horizon)."""
    rng = np.random.default_rng(1)
    frame = _sky_over_meadow(rng)
    yy, xx = np.mgrid[0:512, 0:1024]
    discs = []
    for cx in (300, 700):
        disc = (yy - 150) ** 2 + (xx - cx) ** 2 <= 40 ** 2
        leaves = cv2.GaussianBlur(rng.integers(0, 60, (512, 1024), np.uint8), (3, 3), 0)
        frame[disc] = np.stack([40 + leaves, 120 + leaves, 30 + leaves // 2], -1)[disc]
        discs.append(disc)
    return frame, discs


def test_small_islands_of_a_stuff_class_are_objects_each(cfg):
    # issue 10: handheld synthetic seed 2 put a person and a signboard, both named "tree", into
    # one "tree" object; its piece of the person across the seam was a seam split
    frame, discs = _sky_meadow_with_two_green_objects()
    objs = annotate_frame(frame, cfg, build_backends(cfg))
    owners = []
    for disc in discs:
        ids, counts = np.unique(objs.idmap[disc], return_counts=True)
        k = int(ids[np.argmax(counts)])
        assert counts.max() >= 0.8 * disc.sum()
        owners.append(k)
        assert objs.objects[k]["isthing"] and objs.objects[k]["category"] == "unknown"
        assert {p.get("island_of") for p in objs.objects[k]["provenance"]["parts"]} == {"tree"}
    assert owners[0] != owners[1]
    assert objs.stats["stuff_islands"] == 2
    # the background expanses stay stuff, one object per class
    stuff = {o["category"] for o in objs.objects.values() if not o["isthing"]}
    assert {"sky", "grass"} <= stuff

    off = cfg.model_copy(update={"sdr": cfg.sdr.model_copy(update={"island_max_fraction": 0.0})})
    merged = annotate_frame(frame, off, build_backends(off))
    assert merged.stats["stuff_islands"] == 0
    assert merged.idmap[discs[0]].max() == merged.idmap[discs[1]].max()   # one "tree" object: the failure


class _NamedVoter:
    """A voter under another name (what a learned panoptic voter is to the configuration)."""

    def __init__(self, inner, name: str) -> None:
        self.inner, self.name, self.label_space, self.tiled = inner, name, inner.label_space, inner.tiled

    def segment(self, image):
        return self.inner.segment(image)


def test_islands_are_a_rule_for_colour_named_stuff_only(cfg):
    # with voters that name things (learned panoptic models), a small group of "tree" is a tree:
    # the island rule made every lone real tree an "unknown" object [issue 10]
    from tasks.backends import Backends

    frame, discs = _sky_meadow_with_two_green_objects()
    cpu = build_backends(cfg)
    learned = Backends(cpu.entity, [_NamedVoter(v, "oneformer_" + v.name) for v in cpu.voters], cpu.verifier)
    objs = annotate_frame(frame, cfg, learned)
    assert objs.stats["stuff_islands"] == 0
    k = int(np.bincount(objs.idmap[discs[0]]).argmax())
    assert objs.objects[k]["category"] == "tree" and not objs.objects[k]["isthing"]
    assert (objs.idmap[discs[1]] == k).mean() > 0.8                    # one "tree" object, as voted


def test_lone_trees_on_a_real_frame_are_objects_and_the_meadow_stays_stuff(shared_data, cfg):
    rgb = real_erp(shared_data / "360vot_samples/0115_000216.jpg")
    objs = annotate_frame(rgb, cfg, build_backends(cfg))
    islands = [o for o in objs.objects.values() if any("island_of" in p for p in o["provenance"]["parts"])]
    assert islands and all(o["isthing"] and o["category"] == "unknown" for o in islands)
    grass = [o for o in objs.objects.values() if o["category"] == "grass"]
    assert len(grass) == 1 and not grass[0]["isthing"]


def test_touching_nameless_pieces_of_one_small_object_are_one_object(cfg):
    # issue 10: a multi-coloured object is cut where its colours change and the voters name
    # neither half; each half was a track of its own for the whole clip (handheld seed 3 person)
    frame, _ = _sky_meadow_with_two_green_objects()
    flat = frame.copy()
    yy, xx = np.mgrid[0:512, 0:1024]
    disc = (yy - 140) ** 2 + (xx - 880) ** 2 <= 45 ** 2
    grain = np.random.default_rng(2).integers(-45, 46, (512, 1024, 1))
    nograin = np.zeros((512, 1024, 1), np.int64)
    for img, g in ((frame, grain), (flat, nograin)):
        img[disc & (yy < 140)] = np.clip(np.array((200, 40, 190)) + g, 0, 255)[disc & (yy < 140)]    # magenta top half
        img[disc & (yy >= 140)] = np.clip(np.array((60, 55, 50)) + g, 0, 255)[disc & (yy >= 140)]    # dark grey bottom half
    objs = annotate_frame(frame, cfg, build_backends(cfg))
    top, bottom = objs.idmap[disc & (yy < 135)], objs.idmap[disc & (yy > 145)]
    k = int(np.bincount(top).argmax())
    assert (top == k).mean() > 0.9 and (bottom == k).mean() > 0.9
    assert objs.objects[k]["isthing"] and len(objs.objects[k]["provenance"]["parts"]) >= 2
    assert objs.stats["joined_pieces"] >= 1

    off = cfg.model_copy(update={"sdr": cfg.sdr.model_copy(update={"join_touching_unknown": False})})
    apart = annotate_frame(frame, off, build_backends(off))
    top, bottom = apart.idmap[disc & (yy < 135)], apart.idmap[disc & (yy > 145)]
    assert np.bincount(top).argmax() != np.bincount(bottom).argmax()    # two objects: the failure

    # flat pieces meeting at a colour edge are two objects touching (bench_proposals: flat objects
    # at a pole or an occlusion), not joined
    two = annotate_frame(flat, cfg, build_backends(cfg))
    top, bottom = two.idmap[disc & (yy < 135)], two.idmap[disc & (yy > 145)]
    assert np.bincount(top).argmax() != np.bincount(bottom).argmax()


def _meadow_with_a_textured_object_on_it() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blue sky over a green meadow; on the meadow, just under the horizon and touching it, a
    grey-green object with a strong grain (what the CPU voters' grass segment covers, so the
    verifier names it "grass"), and a darker flat patch of meadow."""
    rng = np.random.default_rng(1)
    frame = _sky_over_meadow(rng)
    yy, xx = np.mgrid[0:512, 0:1024]
    thing = (yy - 290) ** 2 + (xx - 500) ** 2 <= 40 ** 2
    grain = cv2.GaussianBlur(rng.integers(-110, 111, (512, 1024)).astype(np.float32), (3, 3), 0)[..., None]
    frame[thing] = np.clip(np.array((105, 125, 75)) + grain, 0, 255).astype(np.uint8)[thing]
    patch = (yy - 330) ** 2 + (xx - 800) ** 2 <= 40 ** 2
    frame[patch] = np.clip(np.array((45, 105, 30)) + rng.integers(-4, 5, (512, 1024, 3)), 0, 255).astype(np.uint8)[patch]
    return frame, thing, patch


def test_a_textured_object_named_like_the_stuff_it_touches_is_an_object(cfg):
    # issue 10: handheld synthetic seed 0, a photo-textured kite lying on the grass at the horizon
    # was named "grass" by the verifier (the grass segment covered it) and joined the grass
    # object: lost for the whole clip, J&F 0.26 (10.6 points of the clip)
    frame, thing, patch = _meadow_with_a_textured_object_on_it()
    objs = annotate_frame(frame, cfg, build_backends(cfg))
    ids, counts = np.unique(objs.idmap[thing], return_counts=True)
    k = int(ids[np.argmax(counts)])
    assert counts.max() >= 0.8 * thing.sum()
    assert objs.objects[k]["isthing"] and objs.objects[k]["category"] == "unknown"
    assert {p.get("island_of") for p in objs.objects[k]["provenance"]["parts"]} == {"grass"}
    # the flat darker patch is meadow: it stays in the one grass object with the rest
    grass = [o for o, v in objs.objects.items() if v["category"] == "grass"]
    assert len(grass) == 1 and (objs.idmap[patch] == grass[0]).mean() > 0.9
    assert (objs.idmap[400:, :200] == grass[0]).mean() > 0.99

    off = cfg.model_copy(update={"sdr": cfg.sdr.model_copy(update={"detach_texture_ratio": 0.0})})
    merged = annotate_frame(frame, off, build_backends(off))
    grass_off = [o for o, v in merged.objects.items() if v["category"] == "grass"]
    assert (merged.idmap[thing] == grass_off[0]).mean() > 0.9        # one "grass" object: the failure


@pytest.mark.parametrize("name", ["360vot_samples/0115_000216.jpg", "360vot_samples/0098_000193.jpg",
                                  "erp_images/pannellum_examplepano_4096x2048.jpg"])
def test_real_stuff_pieces_stay_with_their_class(shared_data, cfg, name):
    # the rule above takes no piece of real stuff away from its class: real stuff is textured like
    # its pieces (0115: 17 small "grass" pieces named by the verifier, CIELAB 5-87 from the
    # meadow, std 14-64 against its 38), the synthetic backdrops are not
    from tasks.labeling.fuse import unlike_their_class
    from tasks.labeling.proposals import propose_frame
    from tasks.labeling.vote import label_entities

    rgb = real_erp(shared_data / name)
    props = propose_frame(rgb, cfg, build_backends(cfg))
    labels, _ = label_entities(props, cfg, build_backends(cfg), frame=rgb)
    assert unlike_their_class(props, labels, cfg) == set()
