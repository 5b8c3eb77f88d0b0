"""Exclusive objects from labeled entities [M §1.2(b)]: fragments join what encloses them,
stuff is merged per class (except small islands of a stuff class: objects), a large region
nobody named gives its voter-agreed stuff parts to their classes and stays an ``unknown`` object
for the rest; only flat nameless background is dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tasks.config import PipelineConfig
from tasks.geometry.erp import row_solid_angles
from tasks.labeling.proposals import FrameProposals
from tasks.labeling.vote import EntityLabel
from tasks.vocabulary import UNKNOWN, Vocabulary, master


@dataclass
class FrameObjects:
    """The SDR's answer for one frame: an exclusive id map and what each id is."""

    idmap: np.ndarray                 # uint16 at the processing resolution
    objects: dict[int, dict]          # id -> {"category", "isthing", "provenance"}
    stats: dict = field(default_factory=dict)
    # the entity map the objects were fused from (proposal work resolution, in the orientation
    # the proposals were made in): the prior of the next refresh (tasks.labeling.sdr.Annotator)
    entity: np.ndarray | None = None
    entity_labels: dict | None = None      # entity -> EntityLabel, for that same prior


def absorb_fragments(props: FrameProposals, labels: dict[int, EntityLabel],
                     config: PipelineConfig | None = None) -> dict[int, int]:
    """Unnamed entities that belong to the region around them join it: ``{fragment: entity}``.

    An ``unknown`` entity whose border is mostly shared with one larger entity of the same
    colour is part of it: a cloud in the sky, a darker patch of grass, a lobe of an object the
    segmentor cut off, a halo along an object's outline. The voters could not name it because
    it is small and unlike the mean; what encloses it can. "Mostly" and "same colour" are
    ``sdr.absorb_border`` and ``sdr.absorb_color``.
    """
    sc = (config or PipelineConfig()).sdr
    ent = props.entity
    if not props.entity_colors or ent.max() == 0:
        return {}
    n_ent = int(ent.max()) + 1
    pairs = _adjacent_pairs(ent)
    key, shared = np.unique(pairs[:, 0] * n_ent + pairs[:, 1], return_counts=True)
    a, b = key // n_ent, key % n_ent
    border = np.bincount(a, weights=shared, minlength=n_ent)
    area = np.bincount(ent.ravel(), minlength=n_ent)
    best: dict[int, tuple[float, int]] = {}
    for e, n, s in zip(a.tolist(), b.tolist(), shared.tolist()):
        le = labels.get(e)
        if le is None or le.label != UNKNOWN or area[n] <= area[e] or n not in labels:
            continue
        if s >= sc.absorb_border * border[e] and s > best.get(e, (0.0, 0))[0]:
            ce, cn = props.entity_colors.get(e), props.entity_colors.get(n)
            if ce is not None and cn is not None and float(np.linalg.norm(np.subtract(ce, cn))) <= sc.absorb_color:
                best[e] = (s, n)
    parent = {e: n for e, (_, n) in best.items()}

    def root(e: int) -> int:
        seen = set()
        while e in parent and e not in seen:
            seen.add(e)
            e = parent[e]
        return e

    return {e: root(e) for e in parent}


def _adjacent_pairs(ent: np.ndarray) -> np.ndarray:
    """Distinct labelled neighbours (4-connected, the seam wraps), each pair in both orders (K, 2)."""
    h = np.stack([ent[:, :-1].ravel(), ent[:, 1:].ravel()], 1)
    wrap = np.stack([ent[:, -1], ent[:, 0]], 1)           # the seam is not a border
    v = np.stack([ent[:-1, :].ravel(), ent[1:, :].ravel()], 1)
    pairs = np.concatenate([h, wrap, v])
    pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs[:, 0] > 0) & (pairs[:, 1] > 0)]
    return np.concatenate([pairs, pairs[:, ::-1]]).astype(np.int64)


def stuff_islands(props: FrameProposals, labels: dict[int, EntityLabel], joins: dict[int, int],
                  config: PipelineConfig | None = None, vocab: Vocabulary | None = None) -> dict[int, int]:
    """Stuff-labelled entities that are objects: ``{entity: island}`` (one id per island).

    An island is a connected group of entities of one stuff class (``joins``' fragments counted
    with the entity they join; the seam wraps) covering less than ``sdr.island_max_fraction`` of
    the sphere. Background stuff comes in expanses that continue into more of its class; a small
    patch of "tree" alone in the sky or of "water" alone in a meadow is, far more often, an
    object whose colours the voters named (the CPU voters name colour and latitude). Merged into
    its class's one object, it cannot be followed: the handheld synthetic clips put a person and a
    signboard (0.8% and 0.8% of the sphere, seed 2) into one "tree" object and a frisbee (seed 3)
    into another; pieces of them held by that object across the seam were the two remaining seam
    splits (issue 10). Real frames: the stuff of 360VOT 0115 / 0098 / 0030, pannellum, andes and
    congo is in groups over 2% of the sphere except single trees against the sky (0115, 0.06-0.4%)
    and a 0.2% "water" patch in 0030's sky, which become objects too. Only with voters that
    name stuff by colour (:func:`colour_named`): a learned panoptic voter's lone "tree" is a tree.
    """
    cfg = config or PipelineConfig()
    limit = cfg.sdr.island_max_fraction
    vocab = vocab or master()
    if not colour_named(props, cfg):
        return {}
    kind = np.zeros(int(props.entity.max()) + 1, np.int64)
    classes: dict[str, int] = {}
    detached = unlike_their_class(props, labels, cfg, vocab)
    for e, lab in labels.items():
        if 0 < e < kind.size and vocab.is_stuff(lab.label):
            # a piece unlike its class counts as a class of its own here: touching the expanse
            # does not make it part of it
            kind[e] = classes.setdefault(("detached:" if e in detached else "") + lab.label, len(classes) + 1)
    groups = _small_groups(props.entity, joins, kind, limit)
    floor = cfg.sdr.island_min_fraction
    if floor > 0 and groups:
        # a speck stays with its class: bench_proposals' seed-5 frame resampled to 85 deg had a
        # 78-px "tree" sliver along the horizon, an island but no object (thing precision 0.993)
        sph = _sphere_shares(props.entity, kind.size)
        for e, r in joins.items():
            if r in groups:
                sph[r] += sph[e]
        size: dict[int, float] = {}
        for e, g in groups.items():
            size[g] = size.get(g, 0.0) + float(sph[e])
        groups = {e: g for e, g in groups.items() if size[g] >= floor}
    return groups


def colour_named(props: FrameProposals, config: PipelineConfig) -> bool:
    """Whether every voter of ``props`` names stuff from colour and latitude only
    (``sdr.colour_voters``): then a stuff class says nothing about whether a region is a thing,
    and :func:`stuff_islands` / :func:`unlike_their_class` apply."""
    return bool(props.voters) and set(props.voters) <= set(config.sdr.colour_voters)


def unlike_their_class(props: FrameProposals, labels: dict[int, EntityLabel], config: PipelineConfig | None = None,
                       vocab: Vocabulary | None = None) -> set[int]:
    """Stuff-labelled entities that are not a piece of their class's expanse although they touch it.

    Such an entity is thing-sized (under ``sdr.island_max_fraction`` of the sphere), its class
    came from the verifier alone (no voter segment matches it whole: the ones that name it are
    the expanse around it), and it looks unlike the entities the vote agreed on for that class:
    mean colour further than ``sdr.detach_color`` (CIELAB) from theirs and lightness std at
    least ``sdr.detach_texture_ratio`` times theirs and at least ``sdr.join_min_texture``.
    Handheld synthetic seed 0: a grey-green photo-textured kite lying on the grass, at the
    horizon, was two entities the verifier named "grass" (the grass segment covered them; CIELAB
    30 and 112 from the grass, std 37 and 27 against its 16); it joined the grass object and
    was lost for the whole clip (J&F 0.26, 10.6 points of the clip) [issue 10].
    """
    cfg = config or PipelineConfig()
    return _seeded(props, labels, _unlike(props, labels, cfg, vocab or master()))


def _unlike(props: FrameProposals, labels: dict[int, EntityLabel], cfg: PipelineConfig,
            vocab: Vocabulary) -> dict[int, tuple[bool, float]]:
    """The thing-sized verifier-named stuff entities unlike their class's vote-agreed body
    (:func:`unlike_their_class`): ``{entity: (also far more textured than the body, CIELAB
    distance of the means)}``."""
    sc = cfg.sdr
    if sc.detach_texture_ratio <= 0 or not props.entity_colors or not colour_named(props, cfg):
        return {}
    n = int(props.entity.max()) + 1
    sph = _sphere_shares(props.entity, n)
    body: dict[str, list[tuple[float, list[float], float]]] = {}
    for e, lab in labels.items():
        if 0 < e < n and lab.how == "vote" and vocab.is_stuff(lab.label) and e in props.entity_colors:
            body.setdefault(lab.label, []).append((float(sph[e]), props.entity_colors[e],
                                                   float(props.entity_texture.get(e, 0.0))))
    looks: dict[str, tuple[np.ndarray, float]] = {}
    for c, parts in body.items():
        wts = np.array([p[0] for p in parts])
        if wts.sum() <= 0:
            continue
        looks[c] = (np.average(np.array([p[1] for p in parts], np.float64), axis=0, weights=wts),
                    float(np.average([p[2] for p in parts], weights=wts)))
    unlike: dict[int, tuple[bool, float]] = {}   # entity -> (far more textured than its class, distance)
    for e, lab in labels.items():
        if not 0 < e < n or lab.how == "vote" or lab.label not in looks or sph[e] >= sc.island_max_fraction:
            continue
        color, tex = props.entity_colors.get(e), float(props.entity_texture.get(e, 0.0))
        bcolor, btex = looks[lab.label]
        if color is None or tex < sc.join_min_texture:
            continue
        dist = float(np.linalg.norm(np.subtract(color, bcolor)))
        if dist > sc.detach_color:
            unlike[e] = (tex >= sc.detach_texture_ratio * btex, dist)
    return unlike


def _seeded(props: FrameProposals, labels: dict[int, EntityLabel], unlike: dict[int, tuple[bool, float]]) -> set[int]:
    if not any(strong for strong, _ in unlike.values()):
        return set()
    n = int(props.entity.max()) + 1
    # the unlike entities of one class that touch one that is also far more textured than its
    # class go with it (the kite's white corner: CIELAB 112 from the grass, std 27 = 1.7 x the grass')
    pairs = _adjacent_pairs(props.entity)
    keep = np.array([a in unlike and b in unlike and labels[a].label == labels[b].label for a, b in pairs.tolist()],
                    bool) if len(pairs) else np.zeros(0, bool)
    graph = coo_matrix((np.ones(int(keep.sum())), (pairs[keep, 0], pairs[keep, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    seeded = {int(comp[e]) for e, (strong, _) in unlike.items() if strong}
    return {e for e in unlike if int(comp[e]) in seeded}


def unlike_pieces(props: FrameProposals, labels: dict[int, EntityLabel], joins: dict[int, int],
                  islands: dict[int, int], config: PipelineConfig | None = None,
                  vocab: Vocabulary | None = None) -> dict[int, int]:
    """``islands`` plus the stuff-labelled entities unlike their class (:func:`_unlike`, the weak
    ones too: std under ``sdr.detach_texture_ratio`` times their class's) by at least
    ``sdr.unlike_join_color`` (CIELAB) that share at least ``sdr.unlike_join_border`` of their
    border with textured pieces of an object (islands or nameless entities under
    ``sdr.island_max_fraction`` of the sphere, std at least ``sdr.join_min_texture``), each as
    an island of its own, so that :func:`unknown_groups` joins it to that object.

    An entity unlike its class is no part of the expanse; touching a piece of an object, it is
    more of that object. Handheld synthetic seed 3, decoded frame 0: the white third of a
    photo-textured frisbee in the sky was named "sky" by the verifier (CIELAB 76 from the voted
    sky, std 35.6 = 1.8 x the sky's, under the 2.0 of a detached island on its own) and went to
    the sky object while its other two thirds, a "tree" island, were the frisbee (IoU 0.66 ->
    0.93). In the tracking pass: handheld auto seed 2 0.9264 -> 0.9316 (an appearing clock kept
    such a piece at its refreshes), prompts seed 2 0.9508 -> 0.9554 [issue 10].
    Only pieces clinging to a textured object are taken: alone, a piece unlike the sky (a bright
    cloud) stays sky, and so do the strips along the horizon, half sky half grass, that touch an
    object at one end (seed 2: CIELAB 69 from the sky, 18% of the border on the animal; seed 3:
    33 from the grass, 49% on the ball; taken, the animal's frame-0 IoU fell 0.97 -> 0.82).
    """
    cfg = config or PipelineConfig()
    sc = cfg.sdr
    if sc.unlike_join_border > 1 or not sc.join_touching_unknown:
        return islands
    unlike = _unlike(props, labels, cfg, vocab or master())
    cand = {e for e, (_, dist) in unlike.items() if e not in islands and e not in joins and dist >= sc.unlike_join_color}
    if not cand:
        return islands
    n = int(props.entity.max()) + 1
    sph = _sphere_shares(props.entity, n)
    tex = props.entity_texture
    island_tex: dict[int, float] = {}
    for e, g in islands.items():
        island_tex[g] = max(island_tex.get(g, 0.0), float(tex.get(e, 0.0)))
    def is_piece(e: int) -> bool:
        if e in islands:
            return island_tex[islands[e]] >= sc.join_min_texture
        lab = labels.get(e)
        return (lab is not None and lab.label == UNKNOWN and e not in joins and sph[e] < sc.island_max_fraction
                and float(tex.get(e, 0.0)) >= sc.join_min_texture)
    pairs = _adjacent_pairs(props.entity)
    border = np.bincount(pairs[:, 0], minlength=n)
    onto = np.zeros(n)
    for a, b in pairs.tolist():
        if a in cand and is_piece(b):
            onto[a] += 1
    out = dict(islands)
    nxt = max(islands.values(), default=0) + 1
    for e in sorted(cand):
        if border[e] and onto[e] >= sc.unlike_join_border * border[e]:
            out[e] = nxt
            nxt += 1
    taken = set(out) - set(islands)
    if taken:
        # only into an object: where the group would be too large to be one (unknown_groups),
        # the piece stays with its class rather than become an object of its own
        groups = unknown_groups(props, labels, joins, out, cfg)
        size: dict[int, int] = {}
        for g in groups.values():
            size[g] = size.get(g, 0) + 1
        for e in taken:
            if e not in groups or groups[e] < 0 or size[groups[e]] < 2:
                del out[e]
    return out


def unknown_groups(props: FrameProposals, labels: dict[int, EntityLabel], joins: dict[int, int],
                   islands: dict[int, int], config: PipelineConfig | None = None) -> dict[int, int]:
    """Objects made of several entities: ``{entity: group}`` for every small nameless entity and
    every stuff island (:func:`stuff_islands`), touching ones in one group, when
    ``sdr.join_touching_unknown``; groups as large as ``sdr.island_max_fraction`` are left apart.

    The colour-driven region merge cuts a multi-coloured object where its colours change; the
    voters name neither half, and each half became a track of its own for the whole clip
    (handheld synthetic seed 3: a person photo-textured half sky, half rock, J 0.50 + 0.49; the
    bird that appears mid-clip, 0.49 + 0.44) [issue 10: "objects are textured and
    multi-coloured"]. Small nameless *textured* pieces (``sdr.join_min_texture``) that touch are
    parts of one object far more often than two objects that happen to touch: the CPU voters
    name no object. Flat pieces are not joined: a flat piece is cut where its one colour ends,
    at its outline; joined, the flat synthetic objects touching at a pole or an occlusion became
    one (bench_proposals, sphere: mean IoU elsewhere 0.976 -> 0.838).
    """
    cfg = config or PipelineConfig()
    if not cfg.sdr.join_touching_unknown:
        return dict(islands)
    limit = cfg.sdr.island_max_fraction
    kind = np.zeros(int(props.entity.max()) + 1, np.int64)
    texture = {e: props.entity_texture.get(e, 0.0) for e in labels}
    island_texture: dict[int, float] = {}
    for e, g in islands.items():      # an island is as textured as its most textured entity
        island_texture[g] = max(island_texture.get(g, 0.0), texture.get(e, 0.0))
    for e, lab in labels.items():
        tex = island_texture[islands[e]] if e in islands else texture[e]
        if 0 < e < kind.size and (lab.label == UNKNOWN or e in islands) and tex >= cfg.sdr.join_min_texture:
            kind[e] = 1
    groups = _small_groups(props.entity, joins, kind, limit)
    for e, g in islands.items():          # flat islands stay objects of their own
        if e not in groups:
            groups[e] = -1 - g
    return groups


def _small_groups(entity: np.ndarray, joins: dict[int, int], kind: np.ndarray, limit: float) -> dict[int, int]:
    """Connected groups of entities of one ``kind`` (> 0; ``joins``' fragments count with the
    entity they join; the seam wraps) covering less than ``limit`` of the sphere:
    ``{entity: group}``."""
    if limit <= 0 or entity.max() == 0:
        return {}
    n = int(entity.max()) + 1
    root = np.arange(n)
    for e, r in joins.items():
        root[e] = r
    ent = root[entity]
    member = (kind > 0) & (root == np.arange(n))
    if not member.any():
        return {}
    pairs = _adjacent_pairs(ent)
    a, b = pairs[:, 0], pairs[:, 1]
    keep = member[a] & member[b] & (kind[a] == kind[b])
    graph = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sph = _sphere_shares(ent, n)
    size = np.bincount(comp[member], weights=sph[member], minlength=int(comp.max()) + 1)
    return {int(e): int(comp[e]) for e in np.nonzero(member)[0] if sph[e] > 0 and size[comp[e]] < limit}


def _sphere_shares(ids: np.ndarray, n: int) -> np.ndarray:
    """Share of the sphere each id of an ERP id map covers (index = id, ``n`` entries at least)."""
    h, w = ids.shape
    weights = np.broadcast_to(row_solid_angles(h, w)[:, None], (h, w)).ravel()
    return np.bincount(ids.ravel(), weights=weights, minlength=n) / (4 * np.pi)


def agreed_stuff(props: FrameProposals, config: PipelineConfig, vocab: Vocabulary) -> np.ndarray:
    """Per pixel, the stuff class at least ``verify.min_votes`` voters agree on there (its
    index in ``stuff_names`` + 1), 0 where they do not. The vote names whole entities (IoU >
    0.5); this is the same agreement pixel by pixel, for an entity larger than any voter segment."""
    index = {c: i + 1 for i, c in enumerate(stuff_names(vocab))}
    maps = []
    for vname, seg in props.voters.items():
        lut = np.zeros(int(seg.labels.max()) + 1, np.int32)
        for k, native in seg.names.items():
            c = vocab.canonical(native, source=props.spaces[vname])
            if c in index and 0 <= k < lut.size:
                lut[k] = index[c]
        maps.append(lut[seg.labels])
    best = np.zeros(props.entity.shape, np.int32)
    if len(maps) < config.verify.min_votes:
        return best
    stack = np.stack(maps)
    for c in np.unique(stack).tolist():
        if c > 0:
            best[(stack == c).sum(axis=0) >= config.verify.min_votes] = c
    return best


def stuff_names(vocab: Vocabulary) -> list[str]:
    return [c for c in vocab.names() if vocab.is_stuff(c)]


def fuse(
    props: FrameProposals, labels: dict[int, EntityLabel], config: PipelineConfig, out_width: int,
    vocab: Vocabulary | None = None,
) -> FrameObjects:
    """Exclusive object id map: stuff merged per class, nameless background dropped."""
    vocab = vocab or master()
    joins = absorb_fragments(props, labels, config)
    islands = unlike_pieces(props, labels, joins, stuff_islands(props, labels, joins, config, vocab), config, vocab)
    groups = unknown_groups(props, labels, joins, islands, config)
    group_object: dict[int, int] = {}
    ent = props.entity
    h, w = ent.shape
    n = int(ent.max())
    areas = np.bincount(ent.ravel(), minlength=n + 1)
    sph = np.bincount(ent.ravel(), weights=np.broadcast_to(row_solid_angles(h, w)[:, None], ent.shape).ravel(),
                      minlength=n + 1) / (4 * np.pi)
    lut = np.zeros(n + 1, np.uint16)
    objects: dict[int, dict] = {}
    stuff_ids: dict[str, int] = {}
    dropped_unknown = named_parts = 0
    agreed: np.ndarray | None = None
    carved: list[tuple[np.ndarray, int]] = []
    min_px = config.min_area(w, config.propose.min_area_px_at_2048)
    order = sorted(range(1, n + 1), key=lambda e: (-areas[e], e))
    entity_object: dict[int, int] = {}
    # fragments after the entity they join, so its object exists when they arrive
    order = [e for e in order if e not in joins] + [e for e in order if e in joins]
    for e in order:
        lab = labels.get(e)
        if lab is None or areas[e] == 0:
            continue
        if e in joins:
            target = entity_object.get(joins[e])
            if target is not None:
                lut[e] = target
                entity_object[e] = target
                objects[target]["provenance"].setdefault("fragments", []).append(e)
            continue
        prov_entity = {"entity": e, "tiles": props.entity_tiles.get(e, []), "label_how": lab.how,
                       "confidence": lab.confidence, "votes": lab.votes}
        if lab.verdict:
            prov_entity["verdict"] = lab.verdict
        if lab.label == UNKNOWN and sph[e] > config.sdr.max_unknown_fraction:
            # too large for any voter segment to match it whole: the parts the voters agree on
            # pixel by pixel get their stuff class; the rest is still a region to track
            if agreed is None:
                agreed = agreed_stuff(props, config, vocab)
            mask = ent == e
            classes = stuff_names(vocab)
            for c in np.unique(agreed[mask]).tolist():
                part = mask & (agreed == c) if c > 0 else None
                if part is None or int(part.sum()) < min_px:
                    continue
                oid = _stuff_object(objects, stuff_ids, classes[c - 1], dict(prov_entity, label_how="voter_parts"),
                                    props, config)
                carved.append((part, oid))
                mask &= ~part
                named_parts += 1
            if config.sdr.nameless_max_texture > 0 and \
                    props.entity_texture.get(e, np.inf) < config.sdr.nameless_max_texture:
                dropped_unknown += 1       # flat, nameless: background, nothing to track
                continue
            if int(mask.sum()) < min_px:
                continue
            prov_entity["review"] = "a large region no voter could name"
        stuff = vocab.is_stuff(lab.label)
        if e in groups:
            # an object the voters named by its colour (stuff_islands) and the nameless pieces
            # touching it (unknown_groups): one object, class unknown (an island's vote stays in
            # its provenance)
            oid = group_object.get(groups[e])
            if oid is None:
                oid = group_object[groups[e]] = len(objects) + 1
                objects[oid] = {"category": UNKNOWN, "isthing": True,
                                "provenance": {"proposers": [props.entity_source], "voters": sorted(props.voters),
                                               "parts": []}}
            objects[oid]["provenance"]["parts"].append(dict(prov_entity, island_of=lab.label) if e in islands
                                                       else prov_entity)
        elif stuff and config.sdr.merge_stuff:
            oid = _stuff_object(objects, stuff_ids, lab.label, prov_entity, props, config)
        else:
            oid = len(objects) + 1
            objects[oid] = {"category": lab.label, "isthing": not stuff,
                            "provenance": {"proposers": [props.entity_source], "voters": sorted(props.voters),
                                           "parts": [prov_entity]}}
        lut[e] = oid
        entity_object[e] = oid
    work_map = lut[ent]
    for part, oid in carved:
        work_map[part] = oid
    out_h = out_width // 2
    idmap = work_map if out_width == w else cv2.resize(work_map, (out_width, out_h), interpolation=cv2.INTER_NEAREST)
    present = set(np.unique(idmap).tolist()) - {0}
    objects = {k: v for k, v in objects.items() if k in present}
    return FrameObjects(idmap.astype(np.uint16), objects,
                        {"objects": len(objects), "dropped_unknown_background": dropped_unknown,
                         "absorbed_fragments": sum(1 for e in joins if e in entity_object),
                         "voter_named_parts": named_parts,
                         "stuff_islands": len({islands[e] for e in islands if e in entity_object}),
                         "joined_pieces": sum(1 for e in groups if e in entity_object)
                         - len({groups[e] for e in groups if e in entity_object})})


def _stuff_object(objects: dict[int, dict], stuff_ids: dict[str, int], label: str, prov_entity: dict,
                  props: FrameProposals, config: PipelineConfig) -> int:
    """The object of stuff class ``label`` (one per class when ``merge_stuff``), with this part."""
    oid = stuff_ids.get(label) if config.sdr.merge_stuff else None
    if oid is not None:
        objects[oid]["provenance"]["parts"].append(prov_entity)
        return oid
    oid = len(objects) + 1
    objects[oid] = {"category": label, "isthing": False,
                    "provenance": {"proposers": [props.entity_source], "voters": sorted(props.voters),
                                   "parts": [prov_entity]}}
    stuff_ids[label] = oid
    return oid


