"""CPU propagator: dense optical flow on wrap-padded frames, id maps warped backward.

* **Seam-aware**: flow is computed on frames padded with the columns of the other side, so an
  object crossing the left/right border moves continuously, and sampling wraps around: it
  keeps one id.
* **Occlusion-aware**: a pixel whose backward flow is not undone by the forward flow (forward-
  backward check) is occluded or newly revealed; it is left unlabeled instead of being smeared
  with the label that happened to be there. A track that loses its pixels is absent.
* **No drift on static scenes**: DIS flow of identical frames is ~0 and the nearest sampling
  keeps every label in place.

The flow runs at ``flow_width`` (cheap) and is upsampled to warp the full-resolution id map.
"""

from __future__ import annotations

import cv2
import numpy as np

from tasks.geometry.erp import check_erp


class FlowPropagator:
    name = "flow"

    def __init__(self, flow_width: int = 512, wrap_pad_ratio: float = 0.125, fb_max_error: float = 1.5,
                 min_area_px: int = 0):
        self.flow_width = int(flow_width)
        self.wrap_pad_ratio = float(wrap_pad_ratio)
        self.fb_max_error = float(fb_max_error)
        self.min_area_px = int(min_area_px)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._prev_gray: np.ndarray | None = None
        self._pad = 0
        self._idmap: np.ndarray | None = None

    # -- helpers ------------------------------------------------------------------------------
    def _gray(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        fw = min(self.flow_width, w)
        g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if fw != w:
            g = cv2.resize(g, (fw, fw // 2), interpolation=cv2.INTER_AREA)
        pad = int(round(fw * self.wrap_pad_ratio))
        self._pad = pad
        if pad:
            g = np.concatenate([g[:, -pad:], g, g[:, :pad]], axis=1)
        return np.ascontiguousarray(g)

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from gray frame a to gray frame b, cropped to the unpadded width."""
        f = self._dis.calc(a, b, None)
        pad = self._pad
        return f[:, pad:a.shape[1] - pad] if pad else f

    # -- protocol -----------------------------------------------------------------------------
    def reset(self, frame: np.ndarray, idmap: np.ndarray) -> None:
        check_erp(frame)
        if idmap.shape != frame.shape[:2]:
            raise ValueError(f"id map {idmap.shape} does not match frame {frame.shape[:2]}")
        self._prev_gray = self._gray(frame)
        self._idmap = idmap.astype(np.uint16).copy()

    def step(self, frame: np.ndarray) -> np.ndarray:
        if self._prev_gray is None or self._idmap is None:
            raise RuntimeError("FlowPropagator.step called before reset")
        h, w = check_erp(frame)
        gray = self._gray(frame)
        back = self._flow(gray, self._prev_gray)   # for each pixel of the new frame: where it was
        fwd = self._flow(self._prev_gray, gray)
        fh, fw = back.shape[:2]
        # forward-backward consistency at flow resolution
        ys, xs = np.mgrid[0:fh, 0:fw].astype(np.float32)
        px = np.mod(xs + back[..., 0], fw)
        py = np.clip(ys + back[..., 1], 0, fh - 1)
        fwd_at = cv2.remap(fwd, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        err = np.hypot(back[..., 0] + fwd_at[..., 0], back[..., 1] + fwd_at[..., 1])
        bad = (err > self.fb_max_error).astype(np.uint8)
        # upsample to the id map's resolution
        scale = w / fw
        if fw != w:
            back = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR) * scale
            bad = cv2.resize(bad, (w, h), interpolation=cv2.INTER_NEAREST)
        xi = np.floor(np.arange(w, dtype=np.float32)[None, :] + back[..., 0] + 0.5).astype(np.int64) % w
        yi = np.clip(np.floor(np.arange(h, dtype=np.float32)[:, None] + back[..., 1] + 0.5).astype(np.int64), 0, h - 1)
        new = self._idmap[yi, xi]
        new[bad.astype(bool)] = 0
        if self.min_area_px > 0:
            areas = np.bincount(new.ravel())
            small = np.flatnonzero((areas > 0) & (areas < self.min_area_px))
            small = small[small > 0]
            if small.size:
                new[np.isin(new, small)] = 0
        self._prev_gray = gray
        self._idmap = new
        return new.copy()


def build_propagator(config, width: int) -> FlowPropagator:
    """The configured propagator for frames of width ``width`` (area thresholds scale with it)."""
    pc = config.propagate
    if pc.backend != "flow":
        from tasks.errors import ConfigError

        raise ConfigError(f"unknown propagator backend {pc.backend!r}")
    return FlowPropagator(pc.flow_width, pc.wrap_pad_ratio, pc.fb_max_error,
                          min_area_px=config.min_area(width, pc.min_area_px_at_2048))
