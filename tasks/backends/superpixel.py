"""CPU entity segmentor: SLIC superpixels merged into regions by colour, texture and edges.

Classical and weight-free, so a laptop run is meaningful: regions of uniform colour/texture
become entities. skimage's RAG helpers cost ~1 s per 512^2 tile in Python loops; the adjacency
statistics here are computed with bincounts and the merge runs on a heap of a few hundred
nodes, ~10x faster at equal output.
"""

from __future__ import annotations

import heapq

import cv2
import numpy as np
from skimage.segmentation import slic


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB with L in [0, 100] and a, b centred on 0 (float32)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


class SuperpixelEntitySegmentor:
    """SLIC + greedy region merging.

    Adjacent regions merge, cheapest first, while the cost stays under ``threshold``; the cost
    of an edge is the CIELAB distance of the region means plus the difference of their
    texture (std of L) plus the mean image gradient along their shared border, so two regions
    of similar colour separated by a visible edge stay apart.
    """

    name = "superpixel"

    def __init__(self, n_segments: int = 600, threshold: float = 14.0, compactness: float = 12.0,
                 edge_weight: float = 0.5, texture_weight: float = 0.5, min_region_px: int = 12):
        self.n_segments = int(n_segments)
        self.threshold = float(threshold)
        self.compactness = float(compactness)
        self.edge_weight = float(edge_weight)
        self.texture_weight = float(texture_weight)
        self.min_region_px = int(min_region_px)

    def segment(self, image: np.ndarray) -> np.ndarray:
        lab = to_lab(image)
        # slic converts RGB to CIELAB itself; handing it float Lab with convert2lab=False makes
        # it fall back to a near-regular grid (seen with scikit-image 0.26)
        sp = slic(image, n_segments=self.n_segments, compactness=self.compactness, sigma=1.0, start_label=1,
                  channel_axis=-1, enforce_connectivity=True)
        return self._merge(lab, sp.astype(np.int32))

    def _merge(self, lab: np.ndarray, sp: np.ndarray) -> np.ndarray:
        n = int(sp.max()) + 1
        flat = sp.ravel()
        count = np.bincount(flat, minlength=n).astype(np.float64)
        sums = np.stack([np.bincount(flat, lab[..., c].ravel(), minlength=n) for c in range(3)], 1)
        sq = np.bincount(flat, (lab[..., 0].ravel().astype(np.float64)) ** 2, minlength=n)
        L = lab[..., 0]
        grad = cv2.magnitude(cv2.Sobel(L, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(L, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
        # border strength per adjacent pair: mean gradient over the pixels on either side
        gh = np.maximum(grad[:, :-1], grad[:, 1:]).ravel()
        gv = np.maximum(grad[:-1, :], grad[1:, :]).ravel()
        a = np.concatenate([sp[:, :-1].ravel(), sp[:-1, :].ravel()])
        b = np.concatenate([sp[:, 1:].ravel(), sp[1:, :].ravel()])
        g = np.concatenate([gh, gv])
        keep = a != b
        a, b, g = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep]), g[keep]
        key = a.astype(np.int64) * n + b
        uk, inv = np.unique(key, return_inverse=True)
        border_len = np.bincount(inv).astype(np.float64)
        border_grad = np.bincount(inv, g) / border_len
        pairs = np.stack([uk // n, uk % n], 1)

        parent = np.arange(n)
        cnt = count.copy()
        s = sums.copy()
        s2 = sq.copy()
        edge = {}  # (i, j) -> [border length, border gradient sum]
        nbrs: dict[int, set[int]] = {i: set() for i in range(1, n)}
        for (i, j), bl, bg in zip(pairs.tolist(), border_len.tolist(), (border_grad * border_len).tolist()):
            edge[(i, j)] = [bl, bg]
            nbrs[i].add(j)
            nbrs[j].add(i)

        def cost(i: int, j: int) -> float:
            mi, mj = s[i] / cnt[i], s[j] / cnt[j]
            di = float(np.sqrt(((mi - mj) ** 2).sum()))
            ti = np.sqrt(max(s2[i] / cnt[i] - mi[0] ** 2, 0.0))
            tj = np.sqrt(max(s2[j] / cnt[j] - mj[0] ** 2, 0.0))
            bl, bg = edge[(min(i, j), max(i, j))]
            return di + self.texture_weight * abs(ti - tj) + self.edge_weight * (bg / bl)

        heap = [(cost(i, j), i, j) for (i, j) in edge]
        heapq.heapify(heap)
        alive = np.ones(n, bool)
        alive[0] = False
        while heap:
            c, i, j = heapq.heappop(heap)
            if not (alive[i] and alive[j]) or (min(i, j), max(i, j)) not in edge:
                continue
            small = min(cnt[i], cnt[j]) < self.min_region_px
            if c > self.threshold and not small:
                continue
            if abs(c - cost(i, j)) > 1e-6:  # stale entry: statistics changed since it was pushed
                heapq.heappush(heap, (cost(i, j), i, j))
                continue
            # merge j into i
            alive[j] = False
            parent[j] = i
            cnt[i] += cnt[j]
            s[i] += s[j]
            s2[i] += s2[j]
            del edge[(min(i, j), max(i, j))]
            nbrs[i].discard(j)
            for k in nbrs.pop(j):
                if k == i:
                    continue
                nbrs[k].discard(j)
                ej = edge.pop((min(j, k), max(j, k)))
                ek = edge.setdefault((min(i, k), max(i, k)), [0.0, 0.0])
                ek[0] += ej[0]
                ek[1] += ej[1]
                nbrs[i].add(k)
                nbrs[k].add(i)
            for k in nbrs[i]:
                heapq.heappush(heap, (cost(i, k), i, k))
        # resolve parents and renumber 1..m
        for v in range(n):
            r = v
            while parent[r] != r:
                r = parent[r]
            parent[v] = r
        roots = np.unique(parent[1:])
        lut = np.zeros(n, np.int32)
        lut[roots] = np.arange(1, roots.size + 1, dtype=np.int32)
        return lut[parent][sp]


class SphereRegionSegmentor:
    """Whole-frame entities on the sphere: SLIC superpixels merged on a spherical adjacency graph.

    The method's tiles are anchored to the seam, and each tile's segmentation depends on where
    it is cut, so one frame rolled by half its width was labelled differently (issue 10: roll
    agreement ~0.75 on real panoramas, ~150 mostly-``unknown`` tracks per real clip). Here the
    region graph is the sphere's: superpixels touching across the seam are neighbours, and so
    are those facing each other across a pole (row 0 at x and x + W/2). Every statistic is
    solid-angle weighted (region means, sizes, border lengths), so a region's cost does not
    depend on its latitude in this frame.

    Merging runs cheapest edge first, in three passes that each have a reason:

    1. while the cost stays under ``threshold``. The colour distance of two regions is divided
       by ``sqrt(1 + var/texture_floor^2)`` with ``var`` the smaller of their textures (the
       area-weighted mean colour variance inside their superpixels):
       a textured surface (foliage, rock, water) varies more between its own superpixels than
       a flat one, and its fragments join; a flat region (sky, a painted object) keeps the
       strict threshold, and so do a flat and a textured region side by side. The border
       term counts only the gradient along the shared border *above* the regions' own
       interior gradient: a texture's edges are not an object's outline. A flat region (colour
       std under ``texture_floor``) and a textured one at least ``flat_textured_ratio`` times
       as varied (each pixel's deviation capped at 3 x ``texture_floor``:
       :func:`_clipped_variance`) cost ``threshold`` more: a textured object whose colour is the sky's differs
       from the sky by its texture alone, and the texture term (0.5 x the std difference) did
       not keep it apart (issue 10, handheld synthetic seed 1: the blue lower third of a
       photo-textured bird near the pole, std 13.3 against the sky's 2.8, CIELAB 9.6 from it,
       joined the sky at cost 15.4 and 35% of the bird was sky for 28 frames).
    2. regions smaller than ``min_fraction`` of the sphere join their cheapest neighbour (a
       track has to be large enough to be followed).
    3. while more than ``max_regions`` remain, the cheapest pair merges: the track budget.

    SLIC runs at ``slic_width`` and the labels are upsampled (nearest) to the input size. The
    defaults are :class:`tasks.config.ProposeConfig`'s; at 1024x512 SLIC takes ~0.45 s CPU and
    the graph and merging ~0.15 s (half the iterations saved 0.2 s but cost bench_proposals
    mean IoU 0.92 -> 0.88 away from the poles).
    """

    name = "sphere_regions"
    accepts_prior = True   # segment(image, prior=...): see merge()

    def __init__(self, *, slic_width: int = 1024, n_segments: int = 1500, compactness: float = 45.0,
                 threshold: float = 20.0, texture_floor: float = 8.0, edge_weight: float = 0.5,
                 texture_weight: float = 0.5, min_fraction: float = 2e-4, max_regions: int = 48,
                 prior_hysteresis: float = 0.3, split_mixed_de: float = 60.0, flat_textured_ratio: float = 0.0):
        self.split_mixed_de = float(split_mixed_de)
        self.flat_textured_ratio = float(flat_textured_ratio)
        self.slic_width = int(slic_width)
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.threshold = float(threshold)
        self.texture_floor = float(texture_floor)
        self.edge_weight = float(edge_weight)
        self.texture_weight = float(texture_weight)
        self.min_fraction = float(min_fraction)
        self.max_regions = int(max_regions)
        self.prior_hysteresis = float(prior_hysteresis)

    def superpixels(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(RGB at the SLIC width, SLIC labels 1..n on it)."""
        H, W = image.shape[:2]
        w = min(W, self.slic_width)
        small = image if w == W else cv2.resize(image, (w, w // 2), interpolation=cv2.INTER_AREA)
        sp = slic(small, n_segments=self.n_segments, compactness=self.compactness, sigma=1.0, start_label=1,
                  channel_axis=-1, enforce_connectivity=True)
        return small, sp.astype(np.int32)

    def segment(self, image: np.ndarray, prior: np.ndarray | None = None,
                hysteresis: float | None = None, prior_colors: dict | None = None) -> np.ndarray:
        """Entity labels of ``image``; ``prior`` (optional, any size, 0 = no region) is an
        earlier segmentation of the same scene in the same orientation (the tracking pass's
        previous keyframe, turned to this frame's), weighed with ``hysteresis`` (default: the
        constructor's), and ``prior_colors`` what its regions looked like: see :meth:`merge`."""
        H, W = image.shape[:2]
        small, sp = self.superpixels(image)
        if self.split_mixed_de > 0:
            sp = split_mixed(small, sp, self.split_mixed_de)
        if prior is not None and prior.shape != sp.shape:
            prior = cv2.resize(prior.astype(np.int32), (sp.shape[1], sp.shape[0]), interpolation=cv2.INTER_NEAREST)
        labels = self.merge(small, sp, prior, hysteresis, prior_colors)
        if labels.shape != (H, W):
            labels = cv2.resize(labels, (W, H), interpolation=cv2.INTER_NEAREST)
        return labels

    # -- the region graph on the sphere ------------------------------------------------------
    @staticmethod
    def graph(lab: np.ndarray, sp: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-superpixel weighted sums and the sphere adjacency with border length/gradient."""
        from tasks.geometry.erp import row_solid_angles

        h, w = sp.shape
        n = int(sp.max()) + 1
        wpx = np.broadcast_to(row_solid_angles(h, w)[:, None], (h, w)).ravel().astype(np.float64)
        flat = sp.ravel()
        area = np.bincount(flat, wpx, minlength=n)
        L = lab[..., 0]
        grad = cv2.magnitude(cv2.Sobel(L, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(L, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
        feats = [lab[..., c].ravel().astype(np.float64) for c in range(3)]
        sums = np.stack([np.bincount(flat, wpx * f, minlength=n) for f in feats], 1)
        sq = np.bincount(flat, wpx * sum(f * f for f in feats), minlength=n)
        # a superpixel's own colour variance is the local texture; a region's texture is the
        # area-weighted mean of its superpixels' (its whole variance would grow with every
        # merge of two different flat parts and then excuse any further merge)
        safe = np.maximum(area, 1e-30)
        tex = area * np.maximum(sq / safe - (sums ** 2).sum(1) / safe ** 2, 0.0)
        gsum = np.bincount(flat, wpx * grad.ravel(), minlength=n)
        # neighbours: left/right (the seam wraps), up/down, and across each pole
        right = np.roll(sp, -1, axis=1)
        gr = np.maximum(grad, np.roll(grad, -1, axis=1))
        half = w // 2
        a = np.concatenate([sp.ravel(), sp[:-1].ravel(), sp[0, :half], sp[-1, :half]])
        b = np.concatenate([right.ravel(), sp[1:].ravel(), sp[0, half:2 * half], sp[-1, half:2 * half]])
        g = np.concatenate([gr.ravel(), np.maximum(grad[:-1], grad[1:]).ravel(),
                            np.maximum(grad[0, :half], grad[0, half:2 * half]),
                            np.maximum(grad[-1, :half], grad[-1, half:2 * half])])
        # border length on the sphere: a vertical border is one row tall (pi/h); a horizontal one
        # at latitude phi is cos(phi) * 2pi/w long; across the pole, one row's width
        edge_lat = np.pi / 2 - np.arange(1, h) / h * np.pi
        lv = np.full(h * w, np.pi / h)
        lh = np.repeat(np.cos(edge_lat) * 2 * np.pi / w, w)
        lp = np.full(2 * half, np.sin(np.pi / h) * 2 * np.pi / w)
        length = np.concatenate([lv, lh, lp])
        keep = a != b
        a, b, g, length = a[keep], b[keep], g[keep], length[keep]
        lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
        uk, inv = np.unique(lo * n + hi, return_inverse=True)
        blen = np.bincount(inv, length)
        bgrad = np.bincount(inv, length * g)
        return area, sums, tex, gsum, np.stack([uk // n, uk % n], 1), blen, bgrad

    def merge(self, rgb: np.ndarray, sp: np.ndarray, prior: np.ndarray | None = None,
              hysteresis: float | None = None, prior_colors: dict | None = None) -> np.ndarray:
        """Merge the superpixels ``sp`` of ``rgb`` into regions (the three passes above).

        With ``prior`` (a label map of ``sp``'s shape) the merge has hysteresis: two regions
        whose largest parts lie in the same prior region cost ``1 - prior_hysteresis`` times
        their cost, two that lie in different ones ``1 + prior_hysteresis`` times. The merge is
        a chain of decisions each near its threshold somewhere in a large frame, and a
        re-encoded, resampled copy of one still scene flipped some of them: the same real frame
        segmented twice agreed at 0.54 (360vot_0030, frame 0 against frame 20 turned back to
        frame 0's orientation) [issue 10]. A decision now changes only when the content
        changed by more than the hysteresis, so a refresh re-cuts the scene the way the
        previous keyframe did and still sees what is new.

        ``prior_colors`` (prior region -> ``(L, a, b, tolerance)``, CIELAB as :func:`to_lab`)
        says what each prior region looked like when it was cut. A superpixel whose mean colour
        is further than the tolerance from a prior region's is not that region any more (an
        object moved onto the sky it used to be, or off it), and that prior region does not
        count for it: the prior is the previous keyframe's cut, not motion-compensated, and a
        moving object lying half over the old sky and half over the old grass was held in two
        by the (1 + h) penalty at every refresh, from the split of frame 0 onwards (issue 10:
        the seed-2 still synthetic clip's flower, J&F 0.942 -> 0.899 with the prior on).
        """
        lab = to_lab(rgb)
        area, sums, tex, gsum, pairs, blen, bgrad = self.graph(lab, sp)
        n = area.size
        dom = [0] * n           # each region's largest prior region, and its share of it
        parts: list[dict[int, float]] = [{} for _ in range(n)]
        hyst = 0.0 if prior is None else float(self.prior_hysteresis if hysteresis is None else hysteresis)
        if not 0.0 <= hyst < 1.0:
            raise ValueError(f"prior hysteresis must be in [0, 1), got {hyst}")
        if hyst > 0:
            from tasks.geometry.erp import row_solid_angles

            h, w = sp.shape
            wpx = np.broadcast_to(row_solid_angles(h, w)[:, None], (h, w)).ravel()
            pr = prior.astype(np.int64).ravel()
            m = int(pr.max()) + 1
            key, inv = np.unique(sp.ravel().astype(np.int64) * m + pr, return_inverse=True)
            acc = np.bincount(inv, wpx)
            stale = _changed_parts(key // m, key % m, area, sums, prior_colors)
            for k, a, gone in zip(key.tolist(), acc.tolist(), stale.tolist()):
                if k % m and not gone:
                    parts[k // m][k % m] = a
            for i in range(n):
                if parts[i]:
                    dom[i] = max(parts[i], key=parts[i].get)
        A = area.tolist()
        S = sums.tolist()
        Q = tex.tolist()
        G = gsum.tolist()
        total = float(area[1:].sum())
        min_area = self.min_fraction * total
        tf2 = self.texture_floor ** 2
        ftr2 = self.flat_textured_ratio ** 2      # on variances
        R = _clipped_variance(lab, sp, area, sums, (3.0 * self.texture_floor) ** 2).tolist() if ftr2 > 0 else []
        edge: dict[tuple[int, int], list[float]] = {}
        nbrs: dict[int, set[int]] = {i: set() for i in range(1, n)}
        for (i, j), bl, bg in zip(pairs.tolist(), blen.tolist(), bgrad.tolist()):
            if i == 0:
                continue
            edge[(i, j)] = [bl, bg]
            nbrs[i].add(j)
            nbrs[j].add(i)

        def cost(i: int, j: int) -> float:
            ai, aj = A[i], A[j]
            si, sj = S[i], S[j]
            mi0, mi1, mi2 = si[0] / ai, si[1] / ai, si[2] / ai
            mj0, mj1, mj2 = sj[0] / aj, sj[1] / aj, sj[2] / aj
            vi, vj = Q[i] / ai, Q[j] / aj
            d = ((mi0 - mj0) ** 2 + (mi1 - mj1) ** 2 + (mi2 - mj2) ** 2) ** 0.5
            d /= (1.0 + min(vi, vj) / tf2) ** 0.5
            bl, bg = edge[(i, j) if i < j else (j, i)]
            border = max(bg / bl - 0.5 * (G[i] / ai + G[j] / aj), 0.0)
            c = d + self.texture_weight * abs(vi ** 0.5 - vj ** 0.5) + self.edge_weight * border
            if ftr2 > 0:
                ri, rj = R[i] / ai, R[j] / aj
                lo, hi = (ri, rj) if ri < rj else (rj, ri)
                if lo < tf2 <= hi and hi >= ftr2 * lo:
                    c += self.threshold
            if hyst and dom[i] and dom[j]:
                c *= (1.0 - hyst) if dom[i] == dom[j] else (1.0 + hyst)
            return c

        parent = list(range(n))
        alive = n - 1

        def union(i: int, j: int) -> None:
            nonlocal alive
            alive -= 1
            parent[j] = i
            A[i] += A[j]
            S[i] = [x + y for x, y in zip(S[i], S[j])]
            Q[i] += Q[j]
            G[i] += G[j]
            if R:
                R[i] += R[j]
            if hyst and parts[j]:
                pi = parts[i]
                for k, a in parts[j].items():
                    pi[k] = pi.get(k, 0.0) + a
                dom[i] = max(pi, key=pi.get)
            del edge[(i, j) if i < j else (j, i)]
            nbrs[i].discard(j)
            for k in nbrs.pop(j):
                if k == i:
                    continue
                nbrs[k].discard(j)
                ej = edge.pop((j, k) if j < k else (k, j))
                ek = edge.setdefault((i, k) if i < k else (k, i), [0.0, 0.0])
                ek[0] += ej[0]
                ek[1] += ej[1]
                nbrs[i].add(k)
                nbrs[k].add(i)

        def run(allowed) -> None:
            heap = [(cost(i, j), i, j) for (i, j) in edge]
            heapq.heapify(heap)
            while heap:
                c, i, j = heapq.heappop(heap)
                if parent[i] != i or parent[j] != j or ((i, j) if i < j else (j, i)) not in edge:
                    continue
                if not allowed(c, i, j):
                    continue
                now = cost(i, j)
                if abs(c - now) > 1e-9:  # stale: statistics changed since it was pushed
                    heapq.heappush(heap, (now, i, j))
                    continue
                if A[j] > A[i]:
                    i, j = j, i
                union(i, j)
                for k in nbrs[i]:
                    heapq.heappush(heap, (cost(i, k), i, k))

        run(lambda c, i, j: c <= self.threshold or min(A[i], A[j]) < min_area)
        if alive > self.max_regions:
            run(lambda c, i, j: alive > self.max_regions)
        roots = np.array(parent)
        for _ in range(64):  # path halving to the roots (depth is small: merges go to the larger)
            nxt = roots[roots]
            if np.array_equal(nxt, roots):
                break
            roots = nxt
        ids = np.unique(roots[1:])
        lut = np.zeros(n, np.int32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        return lut[roots][sp]


def _clipped_variance(lab: np.ndarray, sp: np.ndarray, area: np.ndarray, sums: np.ndarray,
                      cap: float) -> np.ndarray:
    """Per superpixel, its solid-angle weighted colour variance times its area (as
    :meth:`SphereRegionSegmentor.graph`'s texture) with every pixel's squared deviation from the
    superpixel's mean capped at ``cap``: a few pixels of the neighbour in a superpixel on an
    outline (what :func:`split_mixed` leaves, under its ``min_px``) made a flat object's rim
    look textured (8 sky pixels of 350 in a red superpixel: std 15), a texture is spread over
    the whole superpixel."""
    from tasks.geometry.erp import row_solid_angles

    h, w = sp.shape
    n = area.size
    wpx = np.broadcast_to(row_solid_angles(h, w)[:, None], (h, w)).ravel().astype(np.float64)
    flat = sp.ravel()
    mean = sums / np.maximum(area, 1e-30)[:, None]
    dev = ((lab.reshape(-1, 3).astype(np.float64) - mean[flat]) ** 2).sum(1)
    return np.bincount(flat, wpx * np.minimum(dev, cap), minlength=n)


def split_mixed(rgb: np.ndarray, sp: np.ndarray, min_de: float, min_px: int = 8) -> np.ndarray:
    """``sp`` with every superpixel that straddles a colour edge cut in two along it.

    With the compact superpixels of the sphere layout (``propose.slic_compactness`` 45) a
    superpixel on an object's outline or on the horizon often holds both sides; its mean lies
    between them and it chains into a strip that joins neither, or it glues part of an object
    to the strip: a flat-coloured synthetic kite (seed 0) and flower (seed 2) were cut in two
    on frame 0 that way (best-region IoU 0.73 / 0.60; 0.97 / 0.94 with the cut at 60). On real
    textures a low ``min_de`` (30) cut too much: more regions and less consistent ones
    [issue 10]. A superpixel whose colour spread could hide two sides ``min_de`` apart is
    split by 1-D 2-means along its principal colour axis (CIELAB); the cut is kept when both
    sides have ``min_px`` pixels and their means are at least ``min_de`` apart. New labels
    follow ``sp.max()`` (no gaps: the merge counts labels)."""
    lab = to_lab(rgb).reshape(-1, 3).astype(np.float64)
    flat = sp.ravel()
    n = int(flat.max()) + 1
    cnt = np.maximum(np.bincount(flat, minlength=n), 1).astype(np.float64)
    mean = np.stack([np.bincount(flat, lab[:, c], n) for c in range(3)], 1) / cnt[:, None]
    var = np.bincount(flat, ((lab - mean[flat]) ** 2).sum(1), n) / cnt
    # two equal halves d apart have a spread of d^2/4: a superpixel under (d/2.5)^2 cannot hide them
    cand = np.flatnonzero(var > (min_de / 2.5) ** 2)
    if cand.size == 0:
        return sp
    out = flat.copy()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(n + 1))
    nxt = n
    for i in cand.tolist():
        idx = order[starts[i]:starts[i + 1]]
        x = lab[idx] - mean[i]
        p = x @ np.linalg.svd(x, full_matrices=False)[2][0]
        cut = 0.0
        for _ in range(5):           # 1-D 2-means from the mean; converges in a few steps
            lo, hi = p[p <= cut], p[p > cut]
            if lo.size == 0 or hi.size == 0:
                break
            cut = 0.5 * (lo.mean() + hi.mean())
        side = p > cut
        k = int(side.sum())
        if k < min_px or idx.size - k < min_px:
            continue
        if np.linalg.norm(lab[idx[side]].mean(0) - lab[idx[~side]].mean(0)) < min_de:
            continue
        out[idx[side]] = nxt
        nxt += 1
    return out.reshape(sp.shape)


def _changed_parts(sp_ids: np.ndarray, prior_ids: np.ndarray, area: np.ndarray, sums: np.ndarray,
                   prior_colors: dict | None) -> np.ndarray:
    """Per (superpixel, prior region) pair: True where the superpixel's mean colour (``sums`` /
    ``area``, from :meth:`SphereRegionSegmentor.graph`) is further from the prior region's
    colour than its tolerance (``prior_colors``: region -> (L, a, b, tolerance)); regions
    without a colour are never stale."""
    out = np.zeros(sp_ids.shape, bool)
    if not prior_colors:
        return out
    m = int(max(prior_colors, default=0)) + 1
    m = max(m, int(prior_ids.max(initial=0)) + 1)
    ref = np.zeros((m, 3))
    tol = np.full(m, np.inf)
    for p, (L, a, b, t) in prior_colors.items():
        if 0 < int(p) < m:
            ref[int(p)] = (L, a, b)
            tol[int(p)] = t
    mean = sums[sp_ids] / np.maximum(area[sp_ids], 1e-30)[:, None]
    return np.linalg.norm(mean - ref[prior_ids], axis=1) > tol[prior_ids]
