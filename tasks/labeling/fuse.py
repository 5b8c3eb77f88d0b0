"""Exclusive objects from labeled entities [M §1.2(b)]: fragments join what encloses them,
stuff is merged per class, nameless background is dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from tasks.config import PipelineConfig
from tasks.geometry.erp import row_solid_angles
from tasks.labeling.proposals import FrameProposals
from tasks.labeling.vote import EntityLabel
from tasks.vocabulary import UNKNOWN, Vocabulary, master

_ABSORB_BORDER = 0.6   # share of a fragment's border that one stuff region must hold
_ABSORB_COLOR = 20.0   # max CIELAB distance between the fragment and that region (OpenCV Lab units)


@dataclass
class FrameObjects:
    """The SDR's answer for one frame: an exclusive id map and what each id is."""

    idmap: np.ndarray                 # uint16 at the processing resolution
    objects: dict[int, dict]          # id -> {"category", "isthing", "provenance"}
    stats: dict = field(default_factory=dict)


def absorb_fragments(props: FrameProposals, labels: dict[int, EntityLabel]) -> dict[int, int]:
    """Unnamed entities that belong to the region around them join it: ``{fragment: entity}``.

    An ``unknown`` entity whose border is mostly shared with one larger entity of the same
    colour is part of it: a cloud in the sky, a darker patch of grass, a lobe of an object the
    segmentor cut off, a halo along an object's outline. The voters could not name it because
    it is small and unlike the mean; what encloses it can.
    """
    ent = props.entity
    if not props.entity_colors or ent.max() == 0:
        return {}
    n_ent = int(ent.max()) + 1
    h = np.stack([ent[:, :-1].ravel(), ent[:, 1:].ravel()], 1)
    wrap = np.stack([ent[:, -1], ent[:, 0]], 1)           # the seam is not a border
    v = np.stack([ent[:-1, :].ravel(), ent[1:, :].ravel()], 1)
    pairs = np.concatenate([h, wrap, v])
    pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs[:, 0] > 0) & (pairs[:, 1] > 0)]
    pairs = np.concatenate([pairs, pairs[:, ::-1]]).astype(np.int64)
    key, shared = np.unique(pairs[:, 0] * n_ent + pairs[:, 1], return_counts=True)
    a, b = key // n_ent, key % n_ent
    border = np.bincount(a, weights=shared, minlength=n_ent)
    area = np.bincount(ent.ravel(), minlength=n_ent)
    best: dict[int, tuple[float, int]] = {}
    for e, n, s in zip(a.tolist(), b.tolist(), shared.tolist()):
        le = labels.get(e)
        if le is None or le.label != UNKNOWN or area[n] <= area[e] or n not in labels:
            continue
        if s >= _ABSORB_BORDER * border[e] and s > best.get(e, (0.0, 0))[0]:
            ce, cn = props.entity_colors.get(e), props.entity_colors.get(n)
            if ce is not None and cn is not None and float(np.linalg.norm(np.subtract(ce, cn))) <= _ABSORB_COLOR:
                best[e] = (s, n)
    parent = {e: n for e, (_, n) in best.items()}

    def root(e: int) -> int:
        seen = set()
        while e in parent and e not in seen:
            seen.add(e)
            e = parent[e]
        return e

    return {e: root(e) for e in parent}


def fuse(
    props: FrameProposals, labels: dict[int, EntityLabel], config: PipelineConfig, out_width: int,
    vocab: Vocabulary | None = None,
) -> FrameObjects:
    """Exclusive object id map: stuff merged per class, nameless background dropped."""
    vocab = vocab or master()
    joins = absorb_fragments(props, labels)
    ent = props.entity
    h, w = ent.shape
    n = int(ent.max())
    areas = np.bincount(ent.ravel(), minlength=n + 1)
    sph = np.bincount(ent.ravel(), weights=np.broadcast_to(row_solid_angles(h, w)[:, None], ent.shape).ravel(),
                      minlength=n + 1) / (4 * np.pi)
    lut = np.zeros(n + 1, np.uint16)
    objects: dict[int, dict] = {}
    stuff_ids: dict[str, int] = {}
    dropped_unknown = 0
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
        if lab.label == UNKNOWN and sph[e] > config.sdr.max_unknown_fraction:
            dropped_unknown += 1
            continue
        prov_entity = {"entity": e, "tiles": props.entity_tiles.get(e, []), "label_how": lab.how,
                       "confidence": lab.confidence, "votes": lab.votes}
        if lab.verdict:
            prov_entity["verdict"] = lab.verdict
        stuff = vocab.is_stuff(lab.label)
        if stuff and config.sdr.merge_stuff and lab.label in stuff_ids:
            oid = stuff_ids[lab.label]
            objects[oid]["provenance"]["parts"].append(prov_entity)
        else:
            oid = len(objects) + 1
            objects[oid] = {"category": lab.label, "isthing": not stuff,
                            "provenance": {"proposers": [props.entity_source], "voters": sorted(props.voters),
                                           "parts": [prov_entity]}}
            if stuff:
                stuff_ids[lab.label] = oid
        lut[e] = oid
        entity_object[e] = oid
    work_map = lut[ent]
    out_h = out_width // 2
    idmap = work_map if out_width == w else cv2.resize(work_map, (out_width, out_h), interpolation=cv2.INTER_NEAREST)
    present = set(np.unique(idmap).tolist()) - {0}
    objects = {k: v for k, v in objects.items() if k in present}
    return FrameObjects(idmap.astype(np.uint16), objects,
                        {"objects": len(objects), "dropped_unknown_background": dropped_unknown,
                         "absorbed_fragments": sum(1 for e in joins if e in entity_object)})


