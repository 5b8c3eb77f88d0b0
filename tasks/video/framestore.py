"""Decoded frames in the object store: ``videos/{id}/frames/{fps}x{w}/00000.jpg ...``.

Frames depend only on (video, fps, width), not on the labeling configuration, so every run of a
video at the same fps and width shares them. The folder's ``_MANIFEST.json`` is written last; a
folder without it is an interrupted decode and is redone.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator

import cv2
import numpy as np

from tasks import layout
from tasks.errors import ObjectNotFound, PipelineError
from tasks.storage import LocalStore, ObjectStore


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise PipelineError("OpenCV failed to encode a JPEG frame")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PipelineError("a stored frame is not a decodable JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Frames:
    """Random and sequential access to a decoded frame folder."""

    def __init__(self, store: ObjectStore, prefix: str):
        self.store = store
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        try:
            self.manifest = store.get_json(self.prefix + layout.MANIFEST)
        except ObjectNotFound:
            raise ObjectNotFound(f"frames at {self.prefix} are not committed (no {layout.MANIFEST})") from None
        self.count: int = int(self.manifest["count"])
        self.width: int = int(self.manifest["width"])
        self.height: int = int(self.manifest["height"])
        self.fps: float = float(self.manifest["fps"])

    def __len__(self) -> int:
        return self.count

    def key(self, i: int) -> str:
        return layout.frame_key(self.prefix, i)

    def get(self, i: int) -> np.ndarray:
        if not 0 <= i < self.count:
            raise IndexError(f"frame {i} out of range 0..{self.count - 1}")
        if isinstance(self.store, LocalStore):
            bgr = cv2.imread(str(self.store.path(self.key(i))), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ObjectNotFound(f"frame {self.key(i)} is missing or unreadable")
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return decode_jpeg(self.store.get_bytes(self.key(i)))

    def iter(self, start: int = 0, stop: int | None = None, prefetch: int = 4) -> Iterator[np.ndarray]:
        """Frames start..stop-1 in order, decoded a few ahead on a worker thread."""
        stop = self.count if stop is None else min(stop, self.count)
        if start >= stop:
            return
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            pending = [pool.submit(self.get, i) for i in range(start, min(start + prefetch, stop))]
            nxt = start + len(pending)
            while pending:
                frame = pending.pop(0).result()
                if nxt < stop:
                    pending.append(pool.submit(self.get, nxt))
                    nxt += 1
                yield frame
