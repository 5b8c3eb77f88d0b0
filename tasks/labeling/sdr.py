"""The Semantic- and Distortion-aware Refinement on one frame [M §1.2(a)-(d)].

``propose_frame`` -> ``label_entities`` -> ``fuse`` is the method's initial annotation of a
keyframe: entity proposals on seam-aware tiles merged back, labels by cross-model vote with
the verifier for the rest, exclusive masks, stuff classes merged into one object each. The
``propose``, ``verify`` and ``sdr`` stages run these steps one by one (with their outputs in the
store); ``refine`` runs them all at once on the frames it re-annotates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from tasks.backends import Backends
from tasks.backends.protocols import Candidate, LabeledSegments, Verdict, VerifyRequest
from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.geometry.components import spherical_centroid
from tasks.geometry.erp import check_erp, lonlat_axes, row_solid_angles
from tasks.geometry.tiles import cut_tiles, tile_layout
from tasks.labeling.overlap import pair_stats
from tasks.labeling.tilemerge import drop_small, merge_tiles
from tasks.vocabulary import UNKNOWN, Vocabulary, master

log = logging.getLogger(__name__)

_STRIP_INSIDE = 0.7    # share of a tile entity inside a polar-view entity that makes it a strip of it
_ABSORB_BORDER = 0.6   # share of a fragment's border that one stuff region must hold
_ABSORB_COLOR = 20.0   # max CIELAB distance between the fragment and that region (OpenCV Lab units)


@dataclass
class FrameProposals:
    """Everything the proposers said about one frame, at the proposal work resolution."""

    entity: np.ndarray                         # int32, exclusive entity label map
    entity_tiles: dict[int, list[int]]         # entity -> tiles that proposed it
    voters: dict[str, LabeledSegments]         # voter name -> its labeled segments
    spaces: dict[str, str]                     # voter name -> label space
    entity_source: str = "superpixel"
    entity_colors: dict[int, list[float]] = field(default_factory=dict)  # entity -> mean CIELAB

    @property
    def shape(self) -> tuple[int, int]:
        return self.entity.shape  # type: ignore[return-value]

    # -- (de)serialisation for the propose stage's outputs ------------------------------------
    def to_files(self) -> tuple[dict[str, bytes], dict]:
        files = {"entity.png": idmap_png.encode_png(self.entity)}
        meta = {"entity_tiles": {str(k): v for k, v in self.entity_tiles.items()}, "entity_source": self.entity_source,
                "entity_colors": {str(k): v for k, v in self.entity_colors.items()}, "voters": {}}
        for name, seg in self.voters.items():
            files[f"voter_{name}.png"] = idmap_png.encode_png(seg.labels)
            meta["voters"][name] = {"label_space": self.spaces[name],
                                    "names": {str(k): v for k, v in seg.names.items()}}
        return files, meta

    @classmethod
    def from_files(cls, files: dict[str, bytes], meta: dict) -> FrameProposals:
        voters, spaces = {}, {}
        for name, vm in meta["voters"].items():
            labels = idmap_png.decode_png(files[f"voter_{name}.png"]).astype(np.int32)
            voters[name] = LabeledSegments(labels, {int(k): v for k, v in vm["names"].items()})
            spaces[name] = vm["label_space"]
        return cls(
            entity=idmap_png.decode_png(files["entity.png"]).astype(np.int32),
            entity_tiles={int(k): v for k, v in meta["entity_tiles"].items()},
            voters=voters, spaces=spaces, entity_source=meta.get("entity_source", "superpixel"),
            entity_colors={int(k): v for k, v in meta.get("entity_colors", {}).items()},
        )


@dataclass
class EntityLabel:
    label: str
    how: str                 # "vote" | "verifier" | "none"
    confidence: float
    votes: dict = field(default_factory=dict)
    verdict: dict | None = None

    def to_json(self) -> dict:
        return {"label": self.label, "how": self.how, "confidence": self.confidence, "votes": self.votes,
                "verdict": self.verdict}

    @classmethod
    def from_json(cls, d: dict) -> EntityLabel:
        return cls(d["label"], d["how"], d["confidence"], d.get("votes", {}), d.get("verdict"))


@dataclass
class FrameObjects:
    """The SDR's answer for one frame: an exclusive id map and what each id is."""

    idmap: np.ndarray                 # uint16 at the processing resolution
    objects: dict[int, dict]          # id -> {"category", "isthing", "provenance"}
    stats: dict = field(default_factory=dict)


def _work_frame(frame: np.ndarray, config: PipelineConfig) -> np.ndarray:
    h, w = check_erp(frame)
    ww = min(w, config.propose.work_width)
    if ww == w:
        return frame
    return cv2.resize(frame, (ww, ww // 2), interpolation=cv2.INTER_AREA)


def propose_frame(frame: np.ndarray, config: PipelineConfig, backends: Backends) -> FrameProposals:
    work = _work_frame(frame, config)
    h, w = work.shape[:2]
    lay = tile_layout(h, w, config.tiling.pad_ratio, config.tiling.tiles)
    tiles = [np.ascontiguousarray(t) for t in cut_tiles(work, lay)]
    tile_maps = [backends.entity.segment(t) for t in tiles]
    entity, members, _ = merge_tiles(tile_maps, lay, iou_threshold=config.propose.tile_merge_iou)
    if config.propose.polar_views:
        entity, members = add_polar_views(work, entity, members, backends, config)
    min_px = config.min_area(w, config.propose.min_area_px_at_2048)
    kept = drop_small(entity, min_px)
    # carry the tile membership through the renumbering of drop_small
    tiles_of: dict[int, list[int]] = {}
    if kept.max() > 0:
        st = pair_stats(kept, entity)
        for k, e in zip(st.a.tolist(), st.b.tolist()):
            tiles_of[k] = sorted({t for t, _ in members.get(e, [])})
    voters, spaces = {}, {}
    for v in backends.voters:
        if v.tiled:
            segs = [v.segment(t) for t in tiles]
            labels, _, names = merge_tiles([s.labels for s in segs], lay, iou_threshold=config.propose.tile_merge_iou,
                                           tile_names=[s.names for s in segs])
            voters[v.name] = LabeledSegments(labels, names)
        else:
            voters[v.name] = v.segment(work)
        spaces[v.name] = v.label_space
    return FrameProposals(kept, tiles_of, voters, spaces, backends.entity.name, _mean_colors(work, kept))


POLAR_VIEWS = {-1: math.pi / 2, -2: -math.pi / 2}   # pseudo tile index -> view latitude


def add_polar_views(work: np.ndarray, entity: np.ndarray, members: dict, backends: Backends,
                    config: PipelineConfig) -> tuple[np.ndarray, dict]:
    """Distortion-aware proposals at the poles [ours, issue #3 §3].

    The method's ERP tiles see a polar cap stretched tens of times across the width; the entity
    segmentor then cuts one object into strips. A perspective view looking straight up (and one
    down) sees the cap undistorted. Its entities are projected back to the ERP frame and fused
    with the tile entities on the sphere, object by object (no fixed latitude line, which would
    cut an object lying across it):

    * a view entity whose spherical centroid lies in the cap (|lat| >= 90 - fov/4, where the view
      is at its most central) is painted whole, and every tile entity lying mostly inside it
      (the strips the tiles cut it into) joins it;
    * in the band both see, view and tile entities with a solid-angle weighted IoU above the
      tile-merge threshold are the same entity.
    """
    from tasks.geometry.perspective import PerspectiveView

    h, w = entity.shape
    fov = config.propose.polar_view_fov_deg
    own_lat = math.radians(90.0 - fov / 4.0)
    # The view samples the cap as densely along a row as the ERP does at the cap's edge (an ERP
    # row at latitude phi holds 1/cos(phi) times the pixels of the equator's): at one ERP pixel
    # per view pixel the segmentor saw the pole objects coarser than the tiles do and the
    # polar views lost pole IoU (0.951 -> 0.935 in bench_proposals); at this density they gain
    # (0.951 -> 0.973), docs/BENCHMARKS.md.
    size = max(64, int(round(w * math.tan(math.radians(fov) / 2) / math.pi / math.cos(own_lat))))
    _, lat = lonlat_axes(h, w)
    wrow = np.broadcast_to(row_solid_angles(h, w)[:, None], (h, w))
    merged = entity.astype(np.int64)
    next_id = int(merged.max()) + 1
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    def join(x: int, y: int) -> None:
        a, b = find(x), find(y)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for pseudo, view_lat in POLAR_VIEWS.items():
        view = PerspectiveView(lon=0.0, lat=view_lat, fov_deg=fov, width=size, height=size)
        labels = backends.entity.segment(np.ascontiguousarray(view.sample(work, "linear")))
        if labels.max() == 0:
            continue
        if labels.max() >= 65535:
            raise ValueError("polar view produced more than 65534 entities")
        back, covered = view.back(labels.astype(np.uint16), w, "nearest")
        back = np.where(covered, back.astype(np.int64), 0)
        back[back > 0] += next_id - 1
        cap = (lat[:, None] * np.sign(view_lat) >= own_lat) & covered
        band = covered & ~cap

        # same entity where the view and the tiles agree inside the band
        st = pair_stats(np.where(band, back, 0), np.where(band, merged, 0), weights=wrow)
        for i in np.argsort(-st.iou).tolist():
            if st.iou[i] <= config.propose.tile_merge_iou:
                break
            join(int(st.a[i]), int(st.b[i]))
        # view entities centred in the cap are painted whole; tile strips inside them join them
        full = pair_stats(back, merged, weights=wrow)
        ids = np.unique(back[back > 0])
        for v in ids.tolist():
            mask = back == v
            c = spherical_centroid(mask)
            if c is None or c[1] * np.sign(view_lat) < own_lat:
                continue
            merged[mask] = v
            sel = full.a == v
            for t, share in zip(full.b[sel].tolist(), full.cover_b[sel].tolist()):
                if share >= _STRIP_INSIDE:
                    join(v, int(t))
        for v in ids.tolist():
            members.setdefault(v, []).append((pseudo, v - next_id + 1))
        next_id = int(max(next_id, back.max() + 1))
    if parent:
        ids = np.unique(merged)
        lut = {int(i): find(int(i)) for i in ids if i > 0}
        merged = _apply_lut(merged, lut)
        for old, new in lut.items():
            if old != new and old in members:
                members.setdefault(new, []).extend(members.pop(old))
    # renumber 1..n, keeping the membership
    ids = np.unique(merged)
    ids = ids[ids > 0]
    lut = np.zeros(int(merged.max()) + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    out_members = {int(lut[i]): members.get(int(i), []) for i in ids}
    return lut[merged], out_members


def _apply_lut(labels: np.ndarray, lut: dict[int, int]) -> np.ndarray:
    table = np.arange(int(labels.max()) + 1, dtype=np.int64)
    for k, v in lut.items():
        table[k] = v
    return table[labels]


def _mean_colors(rgb: np.ndarray, labels: np.ndarray) -> dict[int, list[float]]:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float64)
    n = int(labels.max()) + 1
    flat = labels.ravel()
    cnt = np.maximum(np.bincount(flat, minlength=n), 1)
    means = np.stack([np.bincount(flat, lab[..., c].ravel(), minlength=n) / cnt for c in range(3)], 1)
    return {int(e): [round(float(v), 2) for v in means[e]] for e in range(1, n)}


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


def label_entities(
    props: FrameProposals, config: PipelineConfig, backends: Backends, vocab: Vocabulary | None = None,
    frame: np.ndarray | None = None,
) -> tuple[dict[int, EntityLabel], dict]:
    """Cross-model vote [M §1.2(c)], then the verifier for every entity the vote left open.

    ``frame`` (the RGB frame, any size) is needed by verifiers that look at pixels: each mask is
    shown as a perspective view centred on it and as a masked crop (:mod:`tasks.labeling.views`).
    """
    vocab = vocab or master()
    n = int(props.entity.max())
    votes: dict[int, dict] = {e: {} for e in range(1, n + 1)}
    candidates: dict[int, list[Candidate]] = {e: [] for e in range(1, n + 1)}
    for vname, seg in props.voters.items():
        space = props.spaces[vname]
        st = pair_stats(props.entity, seg.labels)
        iou, cov = st.iou, st.cover_a
        best: dict[int, tuple[float, int]] = {}
        for e, s, i, c in zip(st.a.tolist(), st.b.tolist(), iou.tolist(), cov.tolist()):
            name = seg.names.get(s)
            if name is not None and (i > config.verify.vote_iou or c >= 0.5):
                candidates[e].append(Candidate(name, vname, space, round(max(i, c), 4)))
            if i > best.get(e, (0.0, 0))[0]:
                best[e] = (i, s)
        for e, (i, s) in best.items():
            name = seg.names.get(s)
            if i > config.verify.vote_iou and name is not None:
                votes[e][vname] = {"native": name, "label": vocab.canonical(name, source=space), "iou": round(i, 4)}
    labels: dict[int, EntityLabel] = {}
    pending: list[int] = []
    for e in range(1, n + 1):
        mapped = [v["label"] for v in votes[e].values()]
        if len(mapped) >= config.verify.min_votes and None not in mapped and len(set(mapped)) == 1:
            labels[e] = EntityLabel(mapped[0], "vote", 1.0, votes[e])
        else:
            pending.append(e)
    stats = {"entities": n, "accepted_by_vote": n - len(pending), "to_verifier": len(pending)}
    if pending and backends.verifier is not None:
        requests = [VerifyRequest(e, candidates[e]) for e in pending]
        if getattr(backends.verifier, "needs_images", False):
            if frame is None:
                raise ValueError(f"the {backends.verifier.name} verifier needs the frame to look at")
            _attach_views(requests, props, frame, config)
        verdicts = backends.verifier.verify(requests)
        for e, v in zip(pending, verdicts):
            labels[e] = EntityLabel(v.label, "verifier", v.confidence, votes[e], v.to_json())
        stats["verifier_calls"] = len(requests)
        stats["verifier_unknown"] = sum(1 for v in verdicts if v.label == UNKNOWN)
        stats["verifier_errors"] = sum(1 for v in verdicts if v.error)
    else:
        for e in pending:
            labels[e] = EntityLabel(UNKNOWN, "none", 0.0, votes[e],
                                    Verdict(UNKNOWN, 0.0, "none", error="no verifier configured").to_json())
    return labels, stats


def _attach_views(requests: list[VerifyRequest], props: FrameProposals, frame: np.ndarray,
                  config: PipelineConfig) -> None:
    from tasks.labeling.views import verifier_view

    h, w = props.entity.shape
    work = frame if frame.shape[1] == w else cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    vc = config.verify
    for r in requests:
        r.view, r.crop, r.crop_hash = verifier_view(work, props.entity == r.mask_id, fov_deg=vc.view_fov_deg,
                                                     width=vc.view_width, height=vc.view_height)


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


def annotate_frame(frame: np.ndarray, config: PipelineConfig, backends: Backends) -> FrameObjects:
    """The whole SDR on one frame (used by refine on the frames it re-annotates)."""
    props = propose_frame(frame, config, backends)
    labels, lstats = label_entities(props, config, backends, frame=frame)
    objs = fuse(props, labels, config, frame.shape[1])
    objs.stats.update(lstats)
    return objs
