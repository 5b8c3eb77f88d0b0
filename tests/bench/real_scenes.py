"""The real panoramas of the re-shot benchmark and their frozen objects (issue 10 §1.1).

Every real ERP image in ``../shared/data`` (``$LEADER360V_SHARED_DATA``), downsized to 1024x512
(area), is one scene. A scene's *frame 0* is that image turned once by a fixed rotation ``R0`` (so
that one object crosses the seam and one sits at |latitude| > 50 deg); its objects are masks of
frame 0 picked once by a classical method (GrabCut from a box: the 360VOT boxes where the data
has them, boxes chosen by eye elsewhere) and frozen in ``real_objects.json`` by
``freeze_real_objects.py``. Nothing here runs the pipeline, so the objects are independent of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.formats import rle as rlemod
from tasks.geometry.rotation import rotate_erp

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OBJECTS_FILE = HERE / "real_objects.json"
WIDTH = 1024


def shared_data() -> Path:
    return Path(os.environ.get("LEADER360V_SHARED_DATA", REPO.parent / "shared" / "data"))


#: scene name -> (file under the shared data folder, top eye of a top-bottom stereo image)
SOURCES = {
    "pannellum": ("erp_images/pannellum_examplepano_4096x2048.jpg", False),
    "andes": ("erp_images/gvr_andes_stereo_topbottom_2048x2048.jpg", True),
    "360vot_0098": ("360vot_samples/0098_000193.jpg", False),
    "360vot_0115": ("360vot_samples/0115_000216.jpg", False),
    "360vot_0030": ("360vot_samples/0030_000064.jpg", False),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_source(name: str, width: int = WIDTH, data: Path | None = None) -> np.ndarray:
    """The scene's image as RGB uint8 (width/2, width, 3), before the frame-0 rotation; for a
    top-bottom stereo image the top eye."""
    rel, top_eye = SOURCES[name]
    path = (data or shared_data()) / rel
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read {path}; set LEADER360V_SHARED_DATA to the shared data folder")
    if top_eye:
        bgr = bgr[: bgr.shape[0] // 2]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[1] != width:
        rgb = cv2.resize(rgb, (width, width // 2), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


@dataclass
class Scene:
    name: str
    R0: np.ndarray            # frame-0 rotation applied to the source image
    objects: list[dict]       # name, category, track_id, seed, mask (bool, frame 0)

    def frame0(self, width: int = WIDTH, data: Path | None = None, source_width: int | None = None) -> np.ndarray:
        """Frame 0 at ``width``, rotated at ``source_width`` (default 2x) and area-averaged."""
        sw = source_width or 2 * width
        img = load_source(self.name, sw, data)
        img = rotate_erp(img, self.R0)
        return img if sw == width else cv2.resize(img, (width, width // 2), interpolation=cv2.INTER_AREA)

    def still(self, width: int, data: Path | None = None) -> np.ndarray:
        """The frame-0 panorama at ``width`` (the still the camera paths re-shoot)."""
        img = load_source(self.name, width, data)
        return rotate_erp(img, self.R0)

    def idmap(self) -> np.ndarray:
        """Frame-0 id map of the objects (uint16, 0 = none; objects never overlap)."""
        h, w = self.objects[0]["mask"].shape
        out = np.zeros((h, w), np.uint16)
        for o in self.objects:
            out[o["mask"] & (out == 0)] = o["track_id"]
        return out


def load_scenes(path: Path = OBJECTS_FILE) -> dict[str, Scene]:
    doc = json.loads(path.read_text())
    out = {}
    for name, s in doc["scenes"].items():
        objs = [dict(o, mask=rlemod.decode(o["rle"])) for o in s["objects"]]
        out[name] = Scene(name, np.asarray(s["R0"], np.float64), objs)
    return out
