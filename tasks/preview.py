"""Preview frames: masks, ids and class names drawn over the ERP frame.

Labels sit at the centre of each object's largest seam-aware component, so an object across the
seam gets one label (on its bigger side), not two half-labels at the borders.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
from scipy.ndimage import find_objects

from tasks.geometry.components import wrap_components


def palette(n: int = 65536) -> np.ndarray:
    """Deterministic, well-separated colours by id (golden-ratio hues); id 0 is black."""
    ids = np.arange(n)
    hue = (ids * 0.618033988749895) % 1.0
    out = np.zeros((n, 3), np.uint8)
    for i in range(1, min(n, 4096)):
        r, g, b = colorsys.hsv_to_rgb(hue[i], 0.75, 0.95)
        out[i] = (int(r * 255), int(g * 255), int(b * 255))
    if n > 4096:
        out[4096:] = out[1:4097][np.arange(n - 4096) % 4096]
    return out


_PALETTE = palette()


def _label_anchor(mask: np.ndarray, row0: int = 0) -> tuple[int, int] | None:
    """Centre of the largest seam-aware component of ``mask`` (rows ``row0..`` of the frame)."""
    comp, n = wrap_components(mask, raster_order=False)
    if n == 0:
        return None
    areas = np.bincount(comp.ravel(), minlength=n + 1)
    areas[0] = 0
    big = comp == int(np.argmax(areas))
    ys, xs = np.nonzero(big)
    w = mask.shape[1]
    # circular mean of the columns, so a component across the seam is centred correctly
    ang = xs / w * 2 * np.pi
    cx = int(round((np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) % (2 * np.pi)) / (2 * np.pi) * w)) % w
    return cx, int(ys.mean()) + row0


def render(frame: np.ndarray, idmap: np.ndarray, names: dict[int, str], *, alpha: float = 0.45,
           width: int | None = None) -> np.ndarray:
    """An RGB preview of one frame at ``width`` (default: the frame's)."""
    h, w = frame.shape[:2]
    if width and width != w:
        frame = cv2.resize(frame, (width, width // 2), interpolation=cv2.INTER_AREA)
        idmap = cv2.resize(idmap, (width, width // 2), interpolation=cv2.INTER_NEAREST)
        h, w = frame.shape[:2]
    color = _PALETTE[idmap]
    # uint8 blending in OpenCV (a float64 blend of the whole frame cost more than the rest)
    out = frame.copy()
    np.copyto(out, cv2.addWeighted(frame, 1 - alpha, color, alpha, 0.0), where=(idmap > 0)[..., None])
    # outlines: pixels whose right or lower neighbour has another id (the seam column wraps)
    edge = np.zeros((h, w), bool)
    np.not_equal(idmap[:, :-1], idmap[:, 1:], out=edge[:, :-1])
    edge[:, -1] = idmap[:, -1] != idmap[:, 0]
    edge[:-1] |= idmap[:-1] != idmap[1:]
    out[edge] = (out[edge] * 0.3).astype(np.uint8) + (color[edge] * 0.7).astype(np.uint8)
    scale = max(0.35, w / 2048 * 0.9)
    thick = max(1, int(round(w / 1024)))
    # each object's rows in one pass over the map; its components are found on those rows only
    # (full width, so the seam still joins): per-object work on the whole frame made the preview
    # a second per frame with a hundred objects (issue 10)
    for tid, band in enumerate(find_objects(idmap), start=1):   # index i holds label i + 1
        if band is None:
            continue
        rows = band[0]
        anchor = _label_anchor(idmap[rows] == tid, rows.start)
        if anchor is None:
            continue
        text = f"{tid}:{names.get(tid, '?')}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        x = int(np.clip(anchor[0] - tw // 2, 0, max(0, w - tw)))
        y = int(np.clip(anchor[1] + th // 2, th, h - 2))
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out
