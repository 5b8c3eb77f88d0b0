"""Plain per-pixel propagation: wrap-aware DIS backward flow, and masks warped along it.

This is the baseline every benchmark table carries (issue 10 §1.4): on a real panorama re-shot
through a moving camera it keeps J ~0.95 of an object, where moving objects as rigid ERP
templates kept < 0.1 after 20 frames. It is also the flow code of the default propagator
(:mod:`tasks.backends.flow`), so there is one implementation of "where was this pixel".

* The flow is DIS on grey frames at a working width (``flow_width``), on frames padded with the
  other side's columns (``pad_ratio`` of the width each side), so the seam is not a border; the
  padding is cropped off the result.
* The flow is *backward* (current frame -> previous frame): every pixel of the new frame looks up
  where it came from, so a warped mask has no holes and needs no splatting.
* Sampling wraps in x (``cv2.BORDER_WRAP``) and clamps in y (the image does not wrap over a pole).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from tasks.geometry.erp import check_erp
from tasks.labeling.coverage import drop_small_ids

_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class WrapFlow:
    """Dense optical flow between ERP frames, seam-continuous, at a working width.

    ``prepare`` turns a frame into what the flow needs of it (grey, resized, wrap-padded; keep
    this instead of the frame); ``flow(a, b)`` is the flow from prepared ``a`` to prepared ``b``
    at the working size, in working-size pixels.
    """

    def __init__(self, flow_width: int = 512, pad_ratio: float = 0.125, wrap: bool = True,
                 preset: str = "medium"):
        self.flow_width = int(flow_width)
        self.pad_ratio = float(pad_ratio)
        self.wrap = bool(wrap)
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[preset])

    def working_size(self, width: int) -> tuple[int, int]:
        fw = min(self.flow_width, width)
        fw -= fw % 2
        return fw // 2, fw

    def pad(self, width: int) -> int:
        return int(round(self.working_size(width)[1] * self.pad_ratio)) if self.wrap else 0

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        h, w = check_erp(frame)
        g = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        fh, fw = self.working_size(w)
        if fw != w:
            g = cv2.resize(g, (fw, fh), interpolation=cv2.INTER_AREA)
        pad = int(round(fw * self.pad_ratio)) if self.wrap else 0
        if pad:
            g = np.concatenate([g[:, -pad:], g, g[:, :pad]], axis=1)
        return np.ascontiguousarray(g)

    def flow(self, a: np.ndarray, b: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Flow from prepared ``a`` to prepared ``b`` (working size, padding cropped off).

        ``init`` (working size, unpadded) is an initial guess DIS refines, e.g. the motion a
        known camera rotation explains; it is wrap-padded like the frames.
        """
        fw = a.shape[1]
        pad = (fw - a.shape[0] * 2) // 2 if self.wrap else 0
        guess = None
        if init is not None:
            guess = np.ascontiguousarray(np.concatenate([init[:, -pad:], init, init[:, :pad]], axis=1)
                                         if pad else init, dtype=np.float32)
        f = self._dis.calc(a, b, guess)
        return f[:, pad:fw - pad] if pad else f


def upsample_flow(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Flow at working size -> flow at ``shape`` (values scaled to full-size pixels)."""
    h, w = shape
    fh, fw = flow.shape[:2]
    if (fh, fw) == (h, w):
        return flow
    return cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(w / fw)


def sample_maps(flow: np.ndarray, wrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Float32 ``cv2.remap`` maps reading each pixel at ``pixel + flow`` (x wrapped, y clamped)."""
    h, w = flow.shape[:2]
    mx = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    mx = np.mod(mx, np.float32(w)) if wrap else np.clip(mx, 0, w - 1)
    my = np.clip(np.arange(h, dtype=np.float32)[:, None] + flow[..., 1], 0, h - 1)
    return mx.astype(np.float32), my.astype(np.float32)


def _remap(src: np.ndarray, maps: tuple[np.ndarray, np.ndarray], interpolation: int, wrap: bool) -> np.ndarray:
    return cv2.remap(src, maps[0], maps[1], interpolation,
                     borderMode=cv2.BORDER_WRAP if wrap else cv2.BORDER_REPLICATE)


def warp_labels(idmap: np.ndarray, back: np.ndarray, wrap: bool = True) -> np.ndarray:
    """Backward-warp an id map (nearest): pixel p takes the label at ``p + back[p]``.

    Equivalent to warping every object's mask independently with nearest sampling: a pixel has
    one source, so the warped masks cannot overlap. ``back`` is full-size backward flow.
    """
    src = np.ascontiguousarray(idmap.astype(np.uint16, copy=False))
    return _remap(src, sample_maps(back, wrap), cv2.INTER_NEAREST, wrap)


def warp_mask(mask: np.ndarray, back: np.ndarray, wrap: bool = True, threshold: float = 0.5) -> np.ndarray:
    """Backward-warp one boolean mask: bilinear sample of the 0/1 mask, kept where >= threshold."""
    m = np.ascontiguousarray(mask, dtype=np.float32)
    return _remap(m, sample_maps(back, wrap), cv2.INTER_LINEAR, wrap) >= threshold


def backward_flow(prev: np.ndarray, cur: np.ndarray, flow_width: int = 512, pad_ratio: float = 0.125,
                  wrap: bool = True, flow: WrapFlow | None = None) -> np.ndarray:
    """Full-size backward flow of ``cur`` into ``prev`` (RGB or grey ERP frames of one size):
    the content at pixel p of ``cur`` was at ``p + flow[p]`` in ``prev`` (x modulo the width)."""
    if prev.shape[:2] != cur.shape[:2]:
        raise ValueError(f"frames of different sizes: {prev.shape[:2]} and {cur.shape[:2]}")
    wf = flow or WrapFlow(flow_width, pad_ratio, wrap)
    return upsample_flow(wf.flow(wf.prepare(cur), wf.prepare(prev)), cur.shape[:2])


class WarpPropagator:
    """The plain baseline as a propagator (``propagate.backend=warp``): the id map is warped
    along the backward flow, nothing else (no occlusion handling, no memory of hidden objects).
    Memory: one prepared frame and one id map."""

    name = "warp"

    def __init__(self, flow_width: int = 512, wrap_pad_ratio: float = 0.125, seam_aware: bool = True,
                 min_area_px: int = 0):
        self.flow = WrapFlow(flow_width, wrap_pad_ratio, seam_aware)
        self.seam_aware = bool(seam_aware)
        self.min_area_px = int(min_area_px)
        #: the baseline measures no camera motion (the interface of FlowPropagator.last_motion)
        self.last_motion = None
        self._prev: np.ndarray | None = None
        self._idmap: np.ndarray | None = None

    def reset(self, frame: np.ndarray, idmap: np.ndarray) -> None:
        check_erp(frame)
        if idmap.shape != frame.shape[:2]:
            raise ValueError(f"id map {idmap.shape} does not match frame {frame.shape[:2]}")
        self._prev = self.flow.prepare(frame)
        self._idmap = idmap.astype(np.uint16).copy()

    def forget(self, ids: Iterable[int]) -> None:
        if self._idmap is not None:
            ids = np.fromiter((int(k) for k in ids), dtype=np.int64)
            self._idmap[np.isin(self._idmap, ids)] = 0

    def hidden_objects(self, shape: tuple[int, int]) -> dict[int, np.ndarray]:
        return {}  # the baseline does not remember what it cannot see

    def step(self, frame: np.ndarray) -> np.ndarray:
        if self._prev is None or self._idmap is None:
            raise RuntimeError("WarpPropagator.step called before reset")
        h, w = check_erp(frame)
        if (h, w) != self._idmap.shape:
            raise ValueError(f"frame {(h, w)} does not match the id map {self._idmap.shape}")
        cur = self.flow.prepare(frame)
        back = upsample_flow(self.flow.flow(cur, self._prev), (h, w))
        new = warp_labels(self._idmap, back, self.seam_aware)
        drop_small_ids(new, self.min_area_px)
        self._prev, self._idmap = cur, new
        return new.copy()
