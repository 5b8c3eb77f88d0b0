"""Writing a synthetic clip and its ground truth to disk, as the pipeline would receive them.

The GT's ``video_uid`` is the first 16 hex digits of the sha256 of the mp4's bytes, which is the
id the pipeline's ingest gives the file: predictions on ``clip.mp4`` and ``gt.json`` then name
the same video with no mapping table.

Id maps are kept zlib-compressed between rendering and GT assembly (they are mostly long runs
of one id), because the uid, and so the GT, only exists once the whole mp4 is written; holding
raw uint16 maps would cost 1 MB per frame at 1024x512.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tasks.formats.ytvis import VideoInfo, build_video
from tasks.synth import look
from tasks.synth.render import render_frames
from tasks.synth.scene import build_scene
from tasks.video.frames import Mp4Writer

CLIP_NAME = "clip.mp4"
GT_NAME = "gt.json"
CRF = 16  # near-lossless: compression noise must not blur the texture the segmenters rely on


def file_uid(path: str | Path) -> str:
    """The pipeline's video id of a file: sha256 of its bytes, first 16 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _write_json_atomic(path: Path, doc: dict) -> None:
    # a unique sibling name opened with the process umask (mkstemp would make it 0600), then
    # renamed over the target: readers see the old file or the whole new one, never half
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_clip(out_dir: str | Path, *, seconds: float = 4.0, fps: float = 15.0, width: int = 1024, seed: int = 0,
                objects: int = 5, camera: str = "still", photos: list[str | Path] | None = None,
                progress: bool = True) -> dict:
    """Render ``out_dir/clip.mp4`` (H.264) and ``out_dir/gt.json`` (release format).

    ``camera``: ``still`` (the original clips, crf 16) or a camera path of
    :mod:`tasks.synth.camera`, which also gives the real-footage look of :mod:`tasks.synth.look`
    (multi-coloured objects, cut from the images at ``photos`` when given; changing light; a JPEG
    round trip and crf 23). The ground truth is exact either way.

    Arguments are checked before anything touches the disk (ValueError, see
    :func:`~tasks.synth.scene.build_scene`). On any failure no clip of this run is left behind:
    the mp4 is written under a temporary name and only renamed once complete, and removed again
    if the ground truth cannot be written. Returns a summary for the CLI to print.
    """
    pics = look.load_photos(photos) if photos else None
    scene = build_scene(seconds=seconds, fps=fps, width=width, seed=seed, objects=objects, camera=camera, photos=pics)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clip_path, gt_path = out / CLIP_NAME, out / GT_NAME
    partial = out / f".{CLIP_NAME}.partial.mp4"
    w, h, n = scene.width, scene.height, scene.n_frames
    packed: list[bytes] = []
    moved = False
    t0 = time.perf_counter()
    try:
        crf = CRF if scene.camera is None else look.CRF
        with Mp4Writer(partial, w, h, scene.fps, crf=crf) as writer:
            for rgb, ids in render_frames(scene, progress=progress):
                writer.write(rgb if scene.jpeg_quality is None else look.compress(rgb, scene.jpeg_quality))
                packed.append(zlib.compress(ids.tobytes(), 1))
        os.replace(partial, clip_path)
        moved = True
        uid = file_uid(clip_path)

        def idmaps() -> Iterator[np.ndarray]:
            for blob in packed:
                yield np.frombuffer(zlib.decompress(blob), np.uint16).reshape(h, w)

        video = VideoInfo(uid=uid, width=w, height=h, length=n, fps=scene.fps, extra={"synth": scene.describe()})
        doc = build_video(video, idmaps(), scene.tracks())
        _write_json_atomic(gt_path, doc)
    except BaseException:
        partial.unlink(missing_ok=True)
        if moved:
            clip_path.unlink(missing_ok=True)
        raise
    wall = time.perf_counter() - t0
    return {
        "clip": str(clip_path), "gt": str(gt_path), "uid": uid, "frames": n, "width": w, "height": h,
        "fps": scene.fps, "seed": scene.seed, "camera": camera,
        "tracks": {tid: {"category": info.category, "role": info.provenance["role"]}
                   for tid, info in scene.tracks().items()},
        "seconds_rendered": round(n / scene.fps, 6),
        "wall_seconds": round(wall, 3),
    }
