"""Merge per-tile segmentations back onto the ERP frame [M §1.2(b), fuse_instances].

Segments of neighbouring tiles are compared inside the columns both tiles see; pairs with IoU
above the threshold (and the same class, for labeled segments) are merged, highest IoU first,
one partner per neighbouring tile. The first and last tiles share the columns around the seam,
so objects crossing the seam are merged by the same rule. Where two unmerged segments still
claim a pixel, the smaller one keeps it (exclusive masks, smaller wins [M §1.2(b)]).

Works on label maps with bincounts, never on one boolean image per mask.
"""

from __future__ import annotations

import numpy as np

from tasks.geometry.tiles import TileLayout
from tasks.labeling.overlap import pair_stats


def _pair_iou(la: np.ndarray, lb: np.ndarray) -> list[tuple[float, int, int]]:
    """IoU of every (label in la, label in lb) pair co-occurring on aligned pixels."""
    st = pair_stats(la, lb)
    return [(float(v), int(x), int(y)) for v, x, y in zip(st.iou, st.a, st.b)]


def merge_tiles(
    tile_labels: list[np.ndarray],
    layout: TileLayout,
    *,
    iou_threshold: float = 0.5,
    tile_names: list[dict[int, str | None]] | None = None,
) -> tuple[np.ndarray, dict[int, list[tuple[int, int]]], dict[int, str | None]]:
    """Fuse tile label maps into one exclusive ERP label map.

    Returns ``(labels, members, names)``: the ERP int32 label map (0 = nothing), for each ERP
    segment the list of ``(tile, tile_label)`` it was merged from, and its class name (when the
    tiles carried names).
    """
    n_tiles = len(tile_labels)
    offsets = np.cumsum([0] + [int(t.max()) for t in tile_labels])
    total = int(offsets[-1]) + 1
    parent = np.arange(total)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def name_of(tile: int, lab: int) -> str | None:
        return None if tile_names is None else tile_names[tile].get(lab)

    cols = [layout.erp_columns(t) for t in range(n_tiles)]
    for a in range(n_tiles):
        for b in range(a + 1, n_tiles):
            common, ia, ib = np.intersect1d(cols[a], cols[b], return_indices=True)
            if common.size == 0:
                continue
            pairs = sorted(_pair_iou(tile_labels[a][:, ia], tile_labels[b][:, ib]), reverse=True)
            used_a: set[int] = set()
            used_b: set[int] = set()
            for iou, x, y in pairs:
                if iou <= iou_threshold:
                    break
                if x in used_a or y in used_b or name_of(a, x) != name_of(b, y):
                    continue
                used_a.add(x)
                used_b.add(y)
                ra, rb = find(offsets[a] + x), find(offsets[b] + y)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)

    roots = np.array([find(i) for i in range(total)])
    # Each ERP column is taken from the tile that sees it most centrally: a tile over-segments
    # what sits near its border (less context), and its fragments must not cut into an object
    # the neighbouring tile saw whole. Objects split between tiles are joined by the merge above.
    H, W = layout.height, layout.width
    margin = np.full(W, -1, np.int64)
    owner = np.zeros(W, np.int64)
    for t in range(n_tiles):
        c = cols[t]
        j = np.arange(c.size)
        m = np.minimum(j, c.size - 1 - j)  # distance to the tile's nearer edge
        better = m > margin[c]
        margin[c[better]] = m[better]
        owner[c[better]] = t
    out_groups = np.zeros((H, W), np.int64)
    for t in range(n_tiles):
        c = cols[t]
        take = owner[c] == t
        g = np.where(tile_labels[t] > 0, roots[tile_labels[t] + offsets[t]], 0)
        out_groups[:, c[take]] = g[:, take]

    uniq = np.unique(out_groups)
    uniq = uniq[uniq > 0]
    lut = np.zeros(total, np.int32)
    lut[uniq] = np.arange(1, uniq.size + 1, dtype=np.int32)
    labels = lut[out_groups]
    members: dict[int, list[tuple[int, int]]] = {}
    names: dict[int, str | None] = {}
    for t in range(n_tiles):
        for lab in range(1, int(tile_labels[t].max()) + 1):
            gid = int(lut[roots[offsets[t] + lab]])
            if gid:
                members.setdefault(gid, []).append((t, lab))
                names.setdefault(gid, name_of(t, lab))
    return labels, members, names


def drop_small(labels: np.ndarray, min_px: int) -> np.ndarray:
    """Remove segments smaller than ``min_px`` pixels and renumber 1..n."""
    area = np.bincount(labels.ravel())
    keep = area >= max(min_px, 1)
    keep[0] = False
    lut = np.zeros(area.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]
