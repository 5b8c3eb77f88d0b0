"""fuse: a piece of an object that the verifier named after the stuff around it (issue 10,
handheld synthetic seed 3: the white third of a photo-textured frisbee in the sky, named "sky",
went to the sky object while its other two thirds, a "tree" island, were the frisbee)."""

import numpy as np
import pytest

from tasks.backends.protocols import LabeledSegments
from tasks.config import PipelineConfig
from tasks.labeling.fuse import absorb_fragments, fuse, stuff_islands, unlike_pieces
from tasks.labeling.proposals import FrameProposals
from tasks.labeling.vote import EntityLabel
from tests.support.real_images import real_erp

SKY, GRASS = [156.0, 134.0, 79.0], [135.0, 89.0, 168.0]     # 8-bit OpenCV Lab, the seed-3 clip's


def _scene(piece_color: list[float], piece_texture: float = 35.6, strip: bool = False):
    """Sky over grass; in the sky a disc: its left part a "tree" island (textured), its right
    part (or, with ``strip``, a thin strip touching the island at one end) a "sky" piece named by
    the verifier. Entities: 1 sky, 2 grass (both agreed by the vote), 3 island, 4 piece."""
    h, w = 512, 1024
    yy, xx = np.mgrid[0:h, 0:w]
    ent = np.where(yy < h // 2, 1, 2).astype(np.int32)
    disc = (yy - 150) ** 2 + (xx - 500) ** 2 <= 30 ** 2
    ent[disc] = 3
    if strip:
        ent[(yy >= 148) & (yy < 152) & (xx > 530) & (xx < 600)] = 4
    else:
        ent[disc & (xx > 505)] = 4
    vote = {"color_prior": {}, "cluster_prior": {}}
    labels = {1: EntityLabel("sky", "vote", 1.0, vote), 2: EntityLabel("grass", "vote", 1.0, vote),
              3: EntityLabel("tree", "verifier", 0.6), 4: EntityLabel("sky", "verifier", 0.6)}
    sky_voter = np.where(yy < h // 2, 1, 2).astype(np.int32)
    voters = {v: LabeledSegments(sky_voter, {1: "sky", 2: "grass"}) for v in ("color_prior", "cluster_prior")}
    props = FrameProposals(ent, {}, voters, {v: "ade20k" for v in voters},
                           entity_colors={1: SKY, 2: GRASS, 3: [117.0, 115.0, 140.0], 4: piece_color},
                           entity_texture={1: 19.9, 2: 13.5, 3: 33.3, 4: piece_texture})
    return props, labels, disc


@pytest.fixture
def cfg():
    return PipelineConfig()


def test_a_piece_unlike_the_sky_clinging_to_an_object_is_that_object(cfg):
    props, labels, disc = _scene([217.0, 122.0, 122.0])       # CIELAB 76 from the sky, std 1.8 x its
    objs = fuse(props, labels, cfg, 1024)
    ids = np.unique(objs.idmap[props.entity == 3]), np.unique(objs.idmap[props.entity == 4])
    assert ids[0].size == 1 and ids[0].tolist() == ids[1].tolist()
    k = int(ids[0][0])
    assert objs.objects[k]["isthing"] and objs.objects[k]["category"] == "unknown"
    sky = [o for o, v in objs.objects.items() if v["category"] == "sky"]
    assert len(sky) == 1 and (objs.idmap[disc] != sky[0]).all()

    off = cfg.model_copy(update={"sdr": cfg.sdr.model_copy(update={"unlike_join_border": 2.0})})
    apart = fuse(props, labels, off, 1024)
    sky_off = [o for o, v in apart.objects.items() if v["category"] == "sky"]
    assert (apart.idmap[props.entity == 4] == sky_off[0]).all()      # the piece in the sky: the failure


def test_a_piece_only_somewhat_unlike_the_sky_stays_sky(cfg):
    # a horizon strip half sky half grass is unlike either by ~30-70 CIELAB: under
    # sdr.unlike_join_color it stays stuff even where it clings to an object
    props, labels, _ = _scene([180.0, 125.0, 100.0])          # CIELAB 33 from the sky
    joins = absorb_fragments(props, labels, cfg)
    islands = stuff_islands(props, labels, joins, cfg)
    assert 3 in islands and unlike_pieces(props, labels, joins, islands, cfg) == islands
    objs = fuse(props, labels, cfg, 1024)
    sky = [o for o, v in objs.objects.items() if v["category"] == "sky"]
    assert (objs.idmap[props.entity == 4] == sky[0]).all()


def test_a_strip_touching_an_object_at_one_end_stays_sky(cfg):
    # most of its border is on the sky: under sdr.unlike_join_border (seed 2: 18% on the animal)
    props, labels, _ = _scene([217.0, 122.0, 122.0], strip=True)
    joins = absorb_fragments(props, labels, cfg)
    islands = stuff_islands(props, labels, joins, cfg)
    assert 4 not in unlike_pieces(props, labels, joins, islands, cfg)


def test_a_flat_piece_is_not_taken(cfg):
    # a piece under sdr.join_min_texture is no textured part of anything (a bright flat cloud)
    props, labels, _ = _scene([217.0, 122.0, 122.0], piece_texture=10.0)
    joins = absorb_fragments(props, labels, cfg)
    islands = stuff_islands(props, labels, joins, cfg)
    assert 4 not in unlike_pieces(props, labels, joins, islands, cfg)


def _real_pieces(shared_data, rel: str, cfg):
    from tasks.backends import build_backends
    from tasks.labeling.proposals import propose_frame
    from tasks.labeling.vote import label_entities

    rgb = real_erp(shared_data / rel)
    props = propose_frame(rgb, cfg, build_backends(cfg))
    labels, _ = label_entities(props, cfg, build_backends(cfg), frame=rgb)
    joins = absorb_fragments(props, labels, cfg)
    islands = stuff_islands(props, labels, joins, cfg)
    return props, labels, islands, unlike_pieces(props, labels, joins, islands, cfg)


@pytest.mark.slow
@pytest.mark.parametrize("rel", ["360vot_samples/0098_000193.jpg", "360vot_samples/0030_000064.jpg",
                                 "erp_images/pannellum_examplepano_4096x2048.jpg",
                                 "erp_images/gvr_andes_stereo_topbottom_2048x2048.jpg"])
def test_real_stuff_is_not_taken(shared_data, cfg, rel):
    # real stuff pieces are not unlike their class by 60 CIELAB and clinging to an object
    _, _, islands, out = _real_pieces(shared_data, rel, cfg)
    assert out == islands


@pytest.mark.slow
def test_real_piece_unlike_its_class_is_not_an_object_alone(shared_data, cfg):
    # 360VOT 0115: the drone's dark arm against the sky, tinted blue, is named "sky" (CIELAB 70 from
    # the sky) and clings to the drone's nameless body pieces; their group is too large for one
    # object (sdr.island_max_fraction), so the arm is not made an object of its own: it stays sky
    props, labels, islands, out = _real_pieces(shared_data, "360vot_samples/0115_000216.jpg", cfg)
    assert out == islands
