"""Per-frame uint16 id-map PNGs: 0 = unlabeled, k = track k. Non-overlap by construction."""

from __future__ import annotations

import cv2
import numpy as np

from tasks.errors import PipelineError


def encode_png(idmap: np.ndarray) -> bytes:
    idmap = np.asarray(idmap)
    if idmap.ndim != 2:
        raise ValueError(f"id map must be 2-D, got shape {idmap.shape}")
    if idmap.size and (idmap.min() < 0 or idmap.max() > 65535):
        raise ValueError("track ids must be in 0..65535 to fit a uint16 PNG")
    ok, buf = cv2.imencode(".png", idmap.astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise PipelineError("OpenCV failed to encode an id-map PNG")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2:
        raise PipelineError("not a single-channel id-map PNG")
    return arr.astype(np.uint16)
