"""What the label verifier looks at: a distortion-corrected view of the mask [M §1.2(d), §6 row 4].

The method's paper-era code sent ERP crops, stretched at high latitudes and cut at the seam; its
2026 fork rotates the sphere so the mask's centroid is the view centre and renders a 640x480
perspective view with a 100° horizontal FoV. We do the same, centring on the *spherical*
centroid (solid-angle weighted), and add the masked crop (the object alone on grey), cropped to
the mask's box in the view plus a margin.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tasks.geometry.components import spherical_centroid
from tasks.geometry.perspective import erp_to_perspective

_CROP_MARGIN = 50     # px around the mask's box in the view, as the method's code
_BACKGROUND = 127


def verifier_view(frame: np.ndarray, mask: np.ndarray, *, fov_deg: float = 100.0, width: int = 640,
                  height: int = 480) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(perspective view centred on the mask, masked crop or None, hash of what is shown)."""
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match frame {frame.shape[:2]}")
    c = spherical_centroid(mask)
    lon, lat = c if c is not None else (0.0, 0.0)
    view = erp_to_perspective(frame, lon=lon, lat=lat, fov_deg=fov_deg, width=width, height=height,
                              interpolation="linear")
    mview = erp_to_perspective(mask.astype(np.uint8), lon=lon, lat=lat, fov_deg=fov_deg, width=width,
                               height=height, interpolation="nearest").astype(bool)
    crop = None
    if mview.any():
        ys, xs = np.nonzero(mview)
        y0, y1 = max(0, ys.min() - _CROP_MARGIN), min(height, ys.max() + _CROP_MARGIN + 1)
        x0, x1 = max(0, xs.min() - _CROP_MARGIN), min(width, xs.max() + _CROP_MARGIN + 1)
        crop = np.where(mview[..., None], view, _BACKGROUND).astype(np.uint8)[y0:y1, x0:x1]
    h = hashlib.sha256()
    for img in (view, crop):
        if img is not None:
            h.update(str(img.shape).encode())
            h.update(np.ascontiguousarray(img).tobytes())
    return view, crop, h.hexdigest()
