"""Real 360° images of the shared data folder as the labeling code sees them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tasks.synth.look import load_photos


def real_erp(path: Path, width: int = 1024) -> np.ndarray:
    """The image at ``path`` as RGB uint8 (width/2, width, 3), a top-bottom stereo image's top eye
    (:func:`tasks.synth.look.load_photos`), resized with area averaging."""
    (rgb,) = load_photos([path])
    return np.ascontiguousarray(cv2.resize(rgb, (width, width // 2), interpolation=cv2.INTER_AREA))
