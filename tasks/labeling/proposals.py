"""Entity and voter proposals on one ERP frame [M §1.2(a)-(b)], the first step of the SDR.

Entity proposals come from seam-aware tiles merged back (plus perspective views of the polar
caps); each voter labels the frame in its own label space. The ``propose`` stage stores the
result (:class:`FrameProposals`) so ``verify`` and ``sdr`` can run on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from tasks.backends import Backends
from tasks.backends.protocols import LabeledSegments
from tasks.config import PipelineConfig, ProposeConfig
from tasks.formats import idmap as idmap_png
from tasks.geometry.components import spherical_centroid
from tasks.geometry.erp import check_erp, lonlat_axes, row_solid_angles
from tasks.geometry.tiles import cut_tiles, tile_layout
from tasks.labeling.overlap import pair_stats
from tasks.labeling.tilemerge import drop_small, merge_tiles


@dataclass
class FrameProposals:
    """Everything the proposers said about one frame, at the proposal work resolution."""

    entity: np.ndarray                         # int32, exclusive entity label map
    entity_tiles: dict[int, list[int]]         # entity -> tiles that proposed it
    voters: dict[str, LabeledSegments]         # voter name -> its labeled segments
    spaces: dict[str, str]                     # voter name -> label space
    entity_source: str = "superpixel"
    entity_colors: dict[int, list[float]] = field(default_factory=dict)  # entity -> mean CIELAB
    # entity -> std of CIELAB lightness inside it: a region without texture has nothing to track
    # (fuse drops a large nameless one as background) [issue 10]
    entity_texture: dict[int, float] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.entity.shape  # type: ignore[return-value]

    # -- (de)serialisation for the propose stage's outputs ------------------------------------
    def to_files(self) -> tuple[dict[str, bytes], dict]:
        files = {"entity.png": idmap_png.encode_png(self.entity)}
        meta = {"entity_tiles": {str(k): v for k, v in self.entity_tiles.items()}, "entity_source": self.entity_source,
                "entity_colors": {str(k): v for k, v in self.entity_colors.items()},
                "entity_texture": {str(k): v for k, v in self.entity_texture.items()}, "voters": {}}
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
            entity_texture={int(k): v for k, v in meta.get("entity_texture", {}).items()},
        )


    @classmethod
    def load(cls, store, prefix: str, frame: int) -> FrameProposals:
        """The proposals of one keyframe from the propose stage's output prefix (read by verify
        and sdr; stages do not import each other, issue 10 "The house")."""
        base = f"{prefix}{frame:05d}/"
        meta = store.get_json(base + "proposals.json")
        files = {"entity.png": store.get_bytes(base + "entity.png")}
        for name in meta["voters"]:
            files[f"voter_{name}.png"] = store.get_bytes(base + f"voter_{name}.png")
        return cls.from_files(files, meta)


def _work_frame(frame: np.ndarray, config: PipelineConfig) -> np.ndarray:
    h, w = check_erp(frame)
    ww = min(w, config.propose.work_width)
    if ww == w:
        return frame
    return cv2.resize(frame, (ww, ww // 2), interpolation=cv2.INTER_AREA)


def canonical_seam(work: np.ndarray, pc: ProposeConfig | None = None) -> int:
    """Columns to roll ``work`` left by so that its quietest meridian becomes the seam.

    The score of a meridian is the solid-angle weighted gradient of lightness in its column, at
    a coarse width (``propose.seam_width``, 256 columns, blocks averaged, so an input rolled by a multiple of the block
    width gives exactly rolled scores); the seam is the trough of the score's first harmonic
    (where its best-fitting sinusoid is lowest, interpolated to a full-width column). Without a
    clear harmonic (``propose.seam_min_harmonic``), the minimum of the score averaged over
    +-``propose.seam_smooth_deg`` (90); ties (flat synthetic frames) go to the column whose
    content sorts first, again a property of the content, not of its position. Hence
    ``canonical_seam(roll(work, s)) == canonical_seam(work) + s`` (mod W) and the rolled frame
    the proposers see is the same whatever the input's yaw [issue 10: roll agreement].
    """
    pc = pc or ProposeConfig()
    h, w = work.shape[:2]
    cw = min(w, pc.seam_width)
    while w % cw:
        cw //= 2
    small = work if cw == w else cv2.resize(work, (cw, cw // 2), interpolation=cv2.INTER_AREA)
    L = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2LAB)[..., 0].astype(np.float64)
    gx = np.abs(np.roll(L, -1, axis=1) - L)
    gy = np.abs(np.diff(L, axis=0, append=L[-1:]))
    col = row_solid_angles(cw // 2, cw) @ (gx + gy)
    # The quiet side is where the first Fourier harmonic of the column score is lowest: a
    # smooth function of the whole frame, so JPEG/H.264 noise or a sub-block roll moves it by a
    # fraction of a column. The argmin of a box-smoothed score (before) sat in a flat valley and
    # jumped by 16-56 columns of 1024 under such noise on 3 of the 6 real frames [issue 10].
    f1 = complex(np.exp(-2j * np.pi * np.arange(cw) / cw) @ col)
    if abs(f1) > pc.seam_min_harmonic * max(float(col.sum()), 1e-12):
        pos = (-np.angle(f1) / (2 * np.pi) * cw + cw / 2) % cw
        return int(round(pos * (w // cw))) % w
    k = max(1, int(round(cw * pc.seam_smooth_deg / 360.0)))
    score = np.convolve(np.concatenate([col[-k:], col, col[:k]]), np.ones(2 * k + 1), "valid")
    score = np.round(score, 6)
    best = np.flatnonzero(score == score.min())
    if best.size > 1:
        cols = L[:, best].T
        best = best[np.lexsort(cols.T[::-1])]
    return int(best[0]) * (w // cw)


def propose_frame(frame: np.ndarray, config: PipelineConfig, backends: Backends,
                  prior: np.ndarray | None = None, prior_looks: dict | None = None) -> FrameProposals:
    """Entity and voter proposals of one ERP frame, at ``propose.work_width``.

    ``prior``: an earlier entity map of the same scene in this frame's orientation (any ERP
    size; the tracking pass's previous keyframe), handed to an entity segmentor that takes one
    (``accepts_prior``: the sphere layout's region merge keeps its earlier decisions unless the
    content changed, see :class:`tasks.backends.superpixel.SphereRegionSegmentor`).
    ``prior_looks``: prior entity -> (mean CIELAB, std of lightness) on the frame it was cut
    on (8-bit OpenCV Lab, as :attr:`FrameProposals.entity_colors`): where the content no longer
    looks like it, that prior entity does not count (:func:`prior_tolerances`).
    """
    work = _work_frame(frame, config)
    if prior is not None and (config.propose.layout != "sphere" or not getattr(backends.entity, "accepts_prior", False)):
        prior = None
    if prior is not None and prior.shape != work.shape[:2]:
        prior = cv2.resize(prior.astype(np.int32), (work.shape[1], work.shape[0]), interpolation=cv2.INTER_NEAREST)
    shift = canonical_seam(work, config.propose) if config.propose.canonical_seam else 0
    if shift:
        props = _propose(np.ascontiguousarray(np.roll(work, -shift, axis=1)), config, backends,
                         None if prior is None else np.roll(prior, -shift, axis=1), prior_looks)
        props.entity = np.roll(props.entity, shift, axis=1)
        props.voters = {k: LabeledSegments(np.roll(seg.labels, shift, axis=1), seg.names)
                        for k, seg in props.voters.items()}
        return props
    return _propose(work, config, backends, prior, prior_looks)


def prior_tolerances(prior_looks: dict | None, pc: ProposeConfig) -> dict[int, tuple[float, float, float, float]]:
    """The segmentor's ``prior_colors``: prior entity -> (L, a, b, tolerance) in the CIELAB scale
    of :func:`tasks.backends.superpixel.to_lab` (L 0..100, a/b centred), the tolerance
    ``propose.prior_change_de`` plus ``propose.prior_change_texture`` times the entity's
    lightness std (a textured entity's superpixels differ from its mean more than a flat one's)."""
    out: dict[int, tuple[float, float, float, float]] = {}
    for e, (color, texture) in (prior_looks or {}).items():
        if color is None:
            continue
        L, a, b = (float(v) for v in color)
        std = 0.0 if texture is None else float(texture) * 100.0 / 255.0
        out[int(e)] = (L * 100.0 / 255.0, a - 128.0, b - 128.0, pc.prior_change_de + pc.prior_change_texture * std)
    return out


def _propose(work: np.ndarray, config: PipelineConfig, backends: Backends,
             prior: np.ndarray | None = None, prior_looks: dict | None = None) -> FrameProposals:
    h, w = work.shape[:2]
    lay = tile_layout(h, w, config.tiling.pad_ratio, config.tiling.tiles)
    tiles: list[np.ndarray] = []
    if config.propose.layout == "sphere":
        # one segmentation of the whole sphere; its graph wraps the seam and crosses the poles
        entity = backends.entity.segment(work) if prior is None else backends.entity.segment(
            work, prior=prior, hysteresis=config.propose.prior_hysteresis,
            prior_colors=prior_tolerances(prior_looks, config.propose))
        members: dict = {}
    else:
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
            tiles = tiles or [np.ascontiguousarray(t) for t in cut_tiles(work, lay)]
            # a learned voter takes the frame's tiles as batches (propose.panoptic_batch_tiles, halved
            # on CUDA out of memory; issue 13)
            many = getattr(v, "segment_many", None)
            segs = many(tiles) if many is not None else [v.segment(t) for t in tiles]
            labels, _, names = merge_tiles([s.labels for s in segs], lay, iou_threshold=config.propose.tile_merge_iou,
                                           tile_names=[s.names for s in segs])
            voters[v.name] = LabeledSegments(labels, names)
        else:
            voters[v.name] = v.segment(work)
        spaces[v.name] = v.label_space
    colors, texture = _color_stats(work, kept)
    return FrameProposals(kept, tiles_of, voters, spaces, backends.entity.name, colors, texture)


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
                if share >= config.propose.polar_strip_inside:
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


def _color_stats(rgb: np.ndarray, labels: np.ndarray) -> tuple[dict[int, list[float]], dict[int, float]]:
    """Mean CIELAB of every entity, and the std of its lightness (its texture)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float64)
    n = int(labels.max()) + 1
    flat = labels.ravel()
    cnt = np.maximum(np.bincount(flat, minlength=n), 1)
    means = np.stack([np.bincount(flat, lab[..., c].ravel(), minlength=n) / cnt for c in range(3)], 1)
    sq = np.bincount(flat, lab[..., 0].ravel() ** 2, minlength=n) / cnt
    std = np.sqrt(np.maximum(sq - means[:, 0] ** 2, 0.0))
    return ({int(e): [round(float(v), 2) for v in means[e]] for e in range(1, n)},
            {int(e): round(float(std[e]), 2) for e in range(1, n)})


