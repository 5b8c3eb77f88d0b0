"""CPU propagator: optical flow on wrap-padded frames, objects moved whole and snapped to colour.

Dense flow alone drifts: it is smoothed across object boundaries, so a moving object's mask
lags and smears a few percent per frame. So the id map is carried in two layers:

* **background** (large regions, stuff): warped per pixel with the backward flow, computed on
  frames padded with the columns of the other side, and sampled with wrap-around — the seam is
  not a border;
* **objects** (compact regions): each moved as a whole by the median forward flow of its
  interior (robust to the smoothed boundary), then its boundary band is re-decided pixel by
  pixel by colour (closer to the object's CIELAB model or to the local background's), which
  cancels drift and follows shape changes. Where two moved objects overlap, each pixel goes to
  the one whose colour it matches (the occluder is what is seen).

Occlusion: a background pixel whose forward-backward flows disagree is occluded or newly
revealed; an object pixel whose colour no longer matches the object is covered. Either way it
is not smeared with a stale label; small holes left behind moving objects are filled from the
surrounding background, and a track that loses its pixels is absent. On a static scene the
flow is ~0 and every label stays where it is.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from tasks.geometry.erp import check_erp
from tasks.labeling.coverage import drop_small_ids

_BAND = 0.12          # boundary band re-decided by colour, as a fraction of the object's size
_MIN_BAND_PX = 2
_COLOR_MATCH = 22.0   # max CIELAB distance from the object's mean colour to keep a pixel
_OCCLUDED = 0.6       # visible area under this share of the full view: look for the hidden part
_FULL_VIEW = 0.85     # visible area over this share of the recent maximum is a full view
_AREA_DECAY = 0.98    # the recent maximum fades per frame, so an object that recedes can shrink
_REACQUIRE = 0.25     # share of the full view that must match again to bring an object back


class _ObjectState:
    """What the propagator remembers of an object: its full view, where it is going, its colour."""

    __slots__ = ("template", "area", "max_area", "cy", "cx", "vy", "vx", "color", "hidden")

    def __init__(self, ys, xs, w, color):
        self.cy, self.cx = _centre(ys, xs, w)
        self.template = (ys - self.cy, _wrapped(xs - self.cx, w))
        self.area = self.max_area = ys.size
        self.vy = self.vx = 0.0
        self.color = color
        self.hidden = 0


def _centre(ys: np.ndarray, xs: np.ndarray, w: int) -> tuple[float, float]:
    ang = xs / w * 2 * np.pi
    cx = (np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) % (2 * np.pi)) / (2 * np.pi) * w
    return float(ys.mean()), float(cx)


def _wrapped(dx: np.ndarray, w: int) -> np.ndarray:
    return (dx + w / 2) % w - w / 2


class FlowPropagator:
    name = "flow"

    def __init__(self, flow_width: int = 512, wrap_pad_ratio: float = 0.125, fb_max_error: float = 1.5,
                 min_area_px: int = 0, object_max_fraction: float = 0.05, gap_px: float | None = None,
                 max_hidden_frames: int = 30, seam_aware: bool = True):
        self.flow_width = int(flow_width)
        self.wrap_pad_ratio = float(wrap_pad_ratio)
        self.fb_max_error = float(fb_max_error)
        self.min_area_px = int(min_area_px)
        self.object_max_fraction = float(object_max_fraction)
        # unlabeled gaps at most this far from a label are closed (flow noise along moving
        # edges); wider holes stay open, so a real newcomer still lowers coverage [M §1.3]
        self.gap_px = gap_px
        self.max_hidden_frames = int(max_hidden_frames)
        # False reproduces the method's propagation, blind to the seam (baseline benchmarks only)
        self.seam_aware = bool(seam_aware)
        self._state: dict[int, _ObjectState] = {}
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._prev_gray: np.ndarray | None = None
        self._prev_lab: np.ndarray | None = None
        self._idmap: np.ndarray | None = None
        self._pad = 0

    # -- flow -----------------------------------------------------------------------------------
    def _gray(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        fw = min(self.flow_width, w)
        g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if fw != w:
            g = cv2.resize(g, (fw, fw // 2), interpolation=cv2.INTER_AREA)
        pad = int(round(fw * self.wrap_pad_ratio)) if self.seam_aware else 0
        self._pad = pad
        if pad:
            g = np.concatenate([g[:, -pad:], g, g[:, :pad]], axis=1)
        return np.ascontiguousarray(g)

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from gray frame a to gray frame b, cropped to the unpadded width."""
        f = self._dis.calc(a, b, None)
        pad = self._pad
        return f[:, pad:a.shape[1] - pad] if pad else f

    @staticmethod
    def _lab(frame: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)

    # -- protocol -----------------------------------------------------------------------------------
    def reset(self, frame: np.ndarray, idmap: np.ndarray) -> None:
        check_erp(frame)
        if idmap.shape != frame.shape[:2]:
            raise ValueError(f"id map {idmap.shape} does not match frame {frame.shape[:2]}")
        self._prev_gray = self._gray(frame)
        self._prev_lab = self._lab(frame)
        own = self._idmap if self._idmap is not None and self._idmap.shape == idmap.shape else None
        self._idmap = idmap.astype(np.uint16).copy()
        # Hidden objects keep coasting (a correction of the visible objects must not make the
        # propagator forget an occluded one). An object in the given map keeps its remembered
        # full view, motion and colour when the correction confirms what the propagator had
        # (most of its own mask of the object is kept) and the mask lies where that view was
        # expected: a re-SDR while it goes behind another object keeps the sliver the
        # propagator had, partly on the occluder; starting afresh from it took the occluder's
        # colour and the object was never found again when it came out (synth seed 2: J&F of
        # that object 0.48 -> 0.87). When the correction gave the object's pixels to another
        # object (the SDR merged two pieces of one ball), it starts afresh from what is left.
        present = set(np.unique(self._idmap).tolist()) - {0}
        h, w = self._idmap.shape
        for k in list(self._state):
            if k in present and not (own is not None and self._confirmed(own == k, self._idmap == k)
                                     and self._where_expected(k, self._idmap == k, h, w)):
                del self._state[k]
        self._observe(self._idmap, self._prev_lab, advance=False)  # same frame: no motion yet

    def forget(self, ids) -> None:
        for k in ids:
            self._state.pop(int(k), None)
            if self._idmap is not None:
                self._idmap[self._idmap == k] = 0

    @staticmethod
    def _confirmed(own: np.ndarray, given: np.ndarray) -> bool:
        return bool((own & given).sum() >= 0.5 * own.sum())

    def _where_expected(self, k: int, mask: np.ndarray, h: int, w: int) -> bool:
        st = self._state[k]
        ys, xs = np.nonzero(mask)
        if ys.size >= _FULL_VIEW * st.max_area:
            return False        # a full view: nothing to keep, it refreshes the template anyway
        expected = cv2.dilate(self._expected(st, h, w).view(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        return bool(expected[ys, xs].mean() >= 0.5)

    def hidden_objects(self, shape: tuple[int, int]) -> dict[int, np.ndarray]:
        """Where each currently hidden object is predicted to be (full-view masks)."""
        h, w = shape
        return {k: self._expected(st, h, w) for k, st in self._state.items() if st.hidden > 0}

    @staticmethod
    def _expected(st: _ObjectState, h: int, w: int) -> np.ndarray:
        """The object's remembered full view at its predicted place."""
        m = np.zeros((h, w), bool)
        m[np.clip(np.round(st.template[0] + st.cy).astype(np.int64), 0, h - 1),
          np.round(st.template[1] + st.cx).astype(np.int64) % w] = True
        return m

    def _observe(self, idmap: np.ndarray, lab: np.ndarray, advance: bool = True) -> None:
        """Update the remembered full view of every visible object."""
        h, w = idmap.shape
        for k in self._object_ids(idmap):
            ys, xs = np.nonzero(idmap == k)
            st = self._state.get(k)
            if st is None:
                self._state[k] = _ObjectState(ys, xs, w, lab[ys, xs].mean(axis=0))
                continue
            st.hidden = 0
            st.max_area = max(ys.size, st.max_area * _AREA_DECAY)
            if ys.size >= _FULL_VIEW * st.max_area:  # a full view: refresh the template
                st.cy, st.cx = _centre(ys, xs, w)
                st.template = (ys - st.cy, _wrapped(xs - st.cx, w))
                st.area = ys.size
                st.color = 0.8 * st.color + 0.2 * lab[ys, xs].mean(axis=0)
            elif advance:  # partly hidden: the template stays; its centre follows the predicted motion
                st.cy += st.vy
                st.cx = (st.cx + st.vx) % w

    def step(self, frame: np.ndarray) -> np.ndarray:
        if self._prev_gray is None or self._idmap is None or self._prev_lab is None:
            raise RuntimeError("FlowPropagator.step called before reset")
        h, w = check_erp(frame)
        gray = self._gray(frame)
        lab = self._lab(frame)
        back = self._flow(gray, self._prev_gray)   # for each pixel of the new frame: where it was
        fwd = self._flow(self._prev_gray, gray)
        fh, fw = back.shape[:2]
        bad = self._fb_inconsistent(back, fwd)
        scale = w / fw
        if fw != w:
            back_full = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR) * scale
            bad = cv2.resize(bad.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        else:
            back_full = back
        prev = self._idmap
        # background layer: per-pixel backward warp with wrap-around sampling
        xi = np.floor(np.arange(w, dtype=np.float32)[None, :] + back_full[..., 0] + 0.5).astype(np.int64)
        xi = xi % w if self.seam_aware else np.clip(xi, 0, w - 1)
        yi = np.clip(np.floor(np.arange(h, dtype=np.float32)[:, None] + back_full[..., 1] + 0.5).astype(np.int64),
                     0, h - 1)
        new = prev[yi, xi]
        new[bad] = 0
        # object layer
        objects = self._object_ids(prev)
        if objects:
            new = self._move_objects(prev, new, objects, fwd, scale, self._prev_lab, lab)
        gap = self.gap_px if self.gap_px is not None else max(1.0, 2.0 * w / 1024)
        if gap > 0:
            new = self._close_thin_gaps(new, gap, wrap=self.seam_aware)
        self._observe(new, lab)
        drop_small_ids(new, self.min_area_px)
        self._prev_gray = gray
        self._prev_lab = lab
        self._idmap = new
        return new.copy()

    # -- pieces -------------------------------------------------------------------------------------
    def _fb_inconsistent(self, back: np.ndarray, fwd: np.ndarray) -> np.ndarray:
        fh, fw = back.shape[:2]
        ys, xs = np.mgrid[0:fh, 0:fw].astype(np.float32)
        px = np.mod(xs + back[..., 0], fw)
        py = np.clip(ys + back[..., 1], 0, fh - 1)
        fwd_at = cv2.remap(fwd, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        err = np.hypot(back[..., 0] + fwd_at[..., 0], back[..., 1] + fwd_at[..., 1])
        return err > self.fb_max_error

    def _object_ids(self, idmap: np.ndarray) -> list[int]:
        areas = np.bincount(idmap.ravel())
        limit = self.object_max_fraction * idmap.size
        return [int(i) for i in np.flatnonzero((areas > 0) & (areas <= limit)) if i > 0]

    def _move_objects(self, prev, new, objects, fwd, scale, prev_lab, lab) -> np.ndarray:
        h, w = prev.shape
        fh, fw = fwd.shape[:2]
        moved: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # id -> (ys, xs, mean colour)
        for k in objects:
            ys, xs = np.nonzero(prev == k)
            if ys.size == 0:
                continue
            m = np.zeros((h, w), np.uint8)
            m[ys, xs] = 1
            er = cv2.erode(np.concatenate([m[:, -2:], m, m[:, :2]], 1), np.ones((5, 5), np.uint8))[:, 2:-2]
            iy, ix = np.nonzero(er)
            if iy.size < 8:
                iy, ix = ys, xs
            fy = np.clip((iy / scale).astype(np.int64), 0, fh - 1)
            fx = np.clip((ix / scale).astype(np.int64), 0, fw - 1)
            dx = float(np.median(fwd[fy, fx, 0])) * scale
            dy = float(np.median(fwd[fy, fx, 1])) * scale
            st = self._state.get(k)
            color = st.color if st is not None else prev_lab[iy, ix].mean(axis=0)
            if st is not None:
                if ys.size >= _FULL_VIEW * st.max_area:
                    # motion of a fully visible object (flow of a half-hidden one is the occluder's)
                    st.vy, st.vx = 0.5 * (st.vy + dy), 0.5 * (st.vx + dx)
                else:
                    dy, dx = st.vy, st.vx
                if ys.size < _OCCLUDED * st.area:
                    # partly hidden: also try the hidden part of the full view
                    ys = np.concatenate([ys, np.round(st.template[0] + st.cy).astype(np.int64)])
                    xs = np.concatenate([xs, np.round(st.template[1] + st.cx).astype(np.int64)])
                    ys, xs = np.clip(ys, 0, h - 1), xs % w
            ny = np.clip(np.round(ys + dy).astype(np.int64), 0, h - 1)
            nx = np.round(xs + dx).astype(np.int64)
            if self.seam_aware:
                nx %= w
            else:  # an object leaving through the border is cut there
                keep = (nx >= 0) & (nx < w)
                ny, nx = ny[keep], nx[keep]
            moved[k] = (ny, nx, color)
        # hidden objects coast along their last motion and come back where their colour shows
        present = set(objects)
        for k, st in list(self._state.items()):
            if k in present:
                continue
            st.hidden += 1
            st.cy += st.vy
            st.cx = (st.cx + st.vx) % w
            if st.hidden > self.max_hidden_frames:
                del self._state[k]
                continue
            found = self._search_hidden(st, lab, h, w)
            if found is not None:
                moved[k] = (*found, st.color)
        # stale object labels are cleared from the background layer first
        ids = np.array(sorted(moved), dtype=np.uint16)
        new[np.isin(new, ids)] = 0
        owner = np.zeros((h, w), np.uint16)
        best = np.full((h, w), np.inf, np.float32)
        for k, (ny, nx, color) in moved.items():
            d = np.linalg.norm(lab[ny, nx] - color, axis=1)
            keep = d <= _COLOR_MATCH
            ny_k, nx_k, d_k = ny[keep], nx[keep], d[keep]
            better = d_k < best[ny_k, nx_k]
            owner[ny_k[better], nx_k[better]] = k
            best[ny_k[better], nx_k[better]] = d_k[better]
        # snap boundaries: re-decide a band around each moved object by colour
        for k, (_, _, color) in moved.items():
            self._snap(owner, best, k, color, lab, new, wrap=self.seam_aware)
        new[owner > 0] = owner[owner > 0]
        return new

    def _search_hidden(self, st: _ObjectState, lab: np.ndarray, h: int, w: int):
        """Look for a hidden object's full view near where it should be, by colour.

        The search window grows with the time hidden (the predicted motion is uncertain); the
        object comes back where enough of its template matches its colour.
        """
        ty, tx = st.template
        radius = max(float(np.abs(ty).max()), float(np.abs(tx).max()), 1.0)
        margin = int(min(w // 4, radius * (0.5 + 0.25 * st.hidden) + 2 * st.hidden))
        th = int(np.ceil(ty.max() - ty.min())) + 1
        tw = int(np.ceil(tx.max() - tx.min())) + 1
        if th >= h or tw >= w // 2:
            return None
        tmpl = np.zeros((th, tw), np.float32)
        oy, ox = np.round(ty - ty.min()).astype(np.int64), np.round(tx - tx.min()).astype(np.int64)
        tmpl[np.clip(oy, 0, th - 1), np.clip(ox, 0, tw - 1)] = 1.0
        # window top-left in frame coordinates (columns wrap)
        y0 = int(round(st.cy + ty.min())) - margin
        x0 = int(round(st.cx + tx.min())) - margin
        rows = np.clip(np.arange(y0, y0 + th + 2 * margin), 0, h - 1)
        cols = np.arange(x0, x0 + tw + 2 * margin)
        cols = cols % w if self.seam_aware else np.clip(cols, 0, w - 1)
        win = lab[rows][:, cols]
        match = (np.linalg.norm(win - st.color, axis=2) <= _COLOR_MATCH).astype(np.float32)
        score = cv2.matchTemplate(match, tmpl, cv2.TM_CCORR)
        _, best, _, (bx, by) = cv2.minMaxLoc(score)
        if best < _REACQUIRE * tmpl.sum():
            return None
        ny = rows[np.clip(by + oy, 0, rows.size - 1)]
        nx = cols[np.clip(bx + ox, 0, cols.size - 1)]
        st.cy = float(ny.mean())
        st.cx = _centre(ny, nx, w)[1]
        return ny, nx

    @staticmethod
    def _snap(owner, best, k, color, lab, background, wrap: bool = True) -> None:
        h, w = owner.shape
        ys, xs = np.nonzero(owner == k)
        if ys.size == 0:
            return
        band = max(_MIN_BAND_PX, int(round(_BAND * np.sqrt(ys.size))))
        # region of interest with wrap: columns relative to the object's circular centre
        ang = xs / w * 2 * np.pi
        cx = int(round((np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) % (2 * np.pi)) / (2 * np.pi) * w))
        rel = (xs - cx + w // 2) % w - w // 2
        half = int(min(w // 2, np.abs(rel).max() + 2 * band + 2))
        y0, y1 = max(0, ys.min() - 2 * band), min(h, ys.max() + 2 * band + 1)
        cols = np.arange(cx - half, cx + half + 1)
        cols = cols % w if wrap else np.unique(np.clip(cols, 0, w - 1))
        sub_owner = owner[y0:y1][:, cols]
        mine = (sub_owner == k).astype(np.uint8)
        kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
        inner = cv2.erode(mine, kern).astype(bool)
        outer = cv2.dilate(mine, kern).astype(bool)
        ring = cv2.dilate(mine, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * band + 1, 4 * band + 1))).astype(bool) & ~outer
        sub_lab = lab[y0:y1][:, cols]
        free = sub_owner == 0
        bg_pixels = sub_lab[ring & free]
        if bg_pixels.shape[0] < 8:
            return
        bg = bg_pixels.mean(axis=0)
        d_obj = np.linalg.norm(sub_lab - color, axis=2)
        d_bg = np.linalg.norm(sub_lab - bg, axis=2)
        band_px = outer & ~inner & ((sub_owner == 0) | (sub_owner == k))
        take = band_px & (d_obj < d_bg) & (d_obj <= _COLOR_MATCH)
        drop = band_px & (sub_owner == k) & ~take
        rows = np.arange(y0, y1)
        ty, tx = np.nonzero(take)
        owner[rows[ty], cols[tx]] = k
        best[rows[ty], cols[tx]] = d_obj[ty, tx]
        dy_, dx_ = np.nonzero(drop)
        owner[rows[dy_], cols[dx_]] = 0
        # pixels an object left go back to the background layer's label (or stay unlabeled)
        background[rows[dy_], cols[dx_]] = np.where(background[rows[dy_], cols[dx_]] == k, 0,
                                                      background[rows[dy_], cols[dx_]])

    @staticmethod
    def _close_thin_gaps(idmap: np.ndarray, gap: float, wrap: bool = True) -> np.ndarray:
        """Unlabeled pixels within ``gap`` px of a label take the nearest label (seam wrapped)."""
        zero = idmap == 0
        if not zero.any() or zero.all():
            return idmap
        pad = int(np.ceil(gap)) + 1
        if wrap:
            sp = np.concatenate([idmap[:, -pad:], idmap, idmap[:, :pad]], axis=1)
        else:
            sp = np.pad(idmap, ((0, 0), (pad, pad)), mode="edge")
        dist, (iy, ix) = ndimage.distance_transform_edt(sp == 0, return_indices=True)
        near = (dist <= gap)[:, pad:-pad]
        filled = sp[iy, ix][:, pad:-pad]
        out = idmap.copy()
        fix = zero & near
        out[fix] = filled[fix]
        return out


def build_propagator(config, width: int, store=None):
    """The configured propagator for frames of width ``width`` (area thresholds scale with it);
    ``store`` resolves a SAM2 checkpoint given as a store key under ``models/``."""
    pc = config.propagate
    if pc.backend == "sam2":
        from tasks.backends.sam2_propagator import build_sam2_propagator

        return build_sam2_propagator(config, width, store=store)
    if pc.backend == "warp":
        from tasks.backends.warp import WarpPropagator

        return WarpPropagator(pc.flow_width, pc.wrap_pad_ratio, pc.seam_aware,
                              min_area_px=config.min_area(width, pc.min_area_px_at_2048))
    if pc.backend != "flow":
        from tasks.errors import ConfigError

        raise ConfigError(f"unknown propagator backend {pc.backend!r}")
    return FlowPropagator(pc.flow_width, pc.wrap_pad_ratio, pc.fb_max_error,
                          min_area_px=config.min_area(width, pc.min_area_px_at_2048), seam_aware=pc.seam_aware)
