"""COCO compressed RLE through pycocotools (the reference implementation).

pycocotools wants Fortran-ordered uint8 input and returns ``counts`` as bytes; both quirks are
absorbed here (cocoapi#91, #70) so the rest of the package deals in bool arrays and JSON dicts.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as _mask


def encode(mask: np.ndarray) -> dict:
    """Bool (H, W) mask -> ``{"size": [H, W], "counts": str}``."""
    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    rle = _mask.encode(m)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _native(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        h, w = rle["size"]
        return _mask.frPyObjects(rle, h, w)
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(rle: dict) -> np.ndarray:
    return _mask.decode(_native(rle)).astype(bool)


def decode_many(rles: list[dict]) -> np.ndarray:
    """Decode several RLEs of one size in one call: (H, W, N) uint8 (Fortran order)."""
    return _mask.decode([_native(r) for r in rles])


def area(rle: dict) -> int:
    return int(_mask.area(_native(rle)))


def encode_idmap(idmap: np.ndarray) -> dict[int, dict]:
    """One RLE per non-zero id of a label map."""
    out = {}
    for i in np.unique(idmap):
        if i == 0:
            continue
        out[int(i)] = encode(idmap == i)
    return out


def merge_area(rles: list[dict]) -> int:
    """Area of the union of several RLEs (used to prove masks do not overlap)."""
    if not rles:
        return 0
    return int(_mask.area(_mask.merge([_native(r) for r in rles], intersect=False)))
