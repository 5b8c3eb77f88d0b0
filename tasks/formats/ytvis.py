"""The release format: YouTube-VIS JSON with 360° extension fields (docs/ARCHITECTURE.md, "Output format").

Standard fields: ``videos`` (id, width, height, length, file_names), ``categories`` (id, name,
isthing), ``annotations`` (id, video_id, category_id, iscrowd, ``segmentations`` with one COCO
compressed RLE or ``null`` per frame, ``areas``, ``bboxes``).

Extensions no peer format has:

* per video: ``video_uid`` (content hash), ``fps``, ``config_hash``, ``empty_frames`` (frames
  explicitly labeled as holding no object);
* per annotation: ``track_id`` (stable id within the video; also the value in the id-map PNGs),
  ``provenance`` (which proposers found it, vote, verifier verdict), ``wrap_bboxes`` (seam-aware
  boxes whose ``x + w`` may exceed the width), ``bfovs`` (``[clon, clat, fov_h, fov_v]`` in
  degrees, as 360VOT) and ``sphere_areas`` (solid angle in steradians).

Masks are built from per-frame id maps, so the masks of one frame never overlap.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.errors import PermanentError
from tasks.formats import rle as rlemod
from tasks.geometry.components import bfov, planar_bbox, wrap_bbox
from tasks.geometry.erp import row_solid_angles
from tasks.vocabulary import Vocabulary, master

FORMAT = "youtube-vis+leader360v"
FORMAT_VERSION = 1


class FormatError(PermanentError):
    """A file does not follow the release format."""


@dataclass
class TrackInfo:
    track_id: int
    category: str
    provenance: dict = field(default_factory=dict)


@dataclass
class VideoInfo:
    uid: str
    width: int
    height: int
    length: int
    fps: float
    file_names: list[str] | None = None
    config_hash: str | None = None
    empty_frames: list[int] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _frame_geometry(mask: np.ndarray, wrow: np.ndarray) -> tuple[dict, int, list, list, list, float]:
    r = rlemod.encode(mask)
    area = int(mask.sum())
    sph = float(mask.sum(axis=1) @ wrow)
    b = bfov(mask)
    return r, area, planar_bbox(mask), wrap_bbox(mask), b.as_list() if b else None, round(sph, 8)


def build_video(
    video: VideoInfo,
    idmaps: Iterable[np.ndarray],
    tracks: dict[int, TrackInfo],
    *,
    vocab: Vocabulary | None = None,
    video_id: int = 1,
    first_annotation_id: int = 1,
) -> dict:
    """A one-video release document from per-frame id maps (uint16, 0 = unlabeled)."""
    vocab = vocab or master()
    n = video.length
    wrow = row_solid_angles(video.height, video.width)
    per_track: dict[int, dict[str, list]] = {
        t: {"segmentations": [None] * n, "areas": [None] * n, "bboxes": [None] * n, "wrap_bboxes": [None] * n,
            "bfovs": [None] * n, "sphere_areas": [None] * n}
        for t in tracks
    }
    count = 0
    for f, idmap in enumerate(idmaps):
        if f >= n:
            raise FormatError(f"more id maps than the video's {n} frames")
        if idmap.shape != (video.height, video.width):
            raise FormatError(f"id map of frame {f} has shape {idmap.shape}, video is {video.height}x{video.width}")
        ids = np.unique(idmap)
        for t in ids[ids > 0].tolist():
            if t not in per_track:
                raise FormatError(f"frame {f} holds track id {t}, which has no track description")
            r, area, bb, wbb, bf, sph = _frame_geometry(idmap == t, wrow)
            pt = per_track[t]
            pt["segmentations"][f] = r
            pt["areas"][f] = area
            pt["bboxes"][f] = bb
            pt["wrap_bboxes"][f] = wbb
            pt["bfovs"][f] = bf
            pt["sphere_areas"][f] = sph
        count += 1
    if count != n:
        raise FormatError(f"got {count} id maps for a video of {n} frames")
    used = set()
    annotations = []
    aid = first_annotation_id
    for t in sorted(tracks):
        info = tracks[t]
        if all(s is None for s in per_track[t]["segmentations"]):
            continue  # a track that never shows is not an object of the release
        cat = vocab.get(info.category)
        used.add(cat.name)
        annotations.append({
            "id": aid, "video_id": video_id, "category_id": cat.id, "iscrowd": 0, "track_id": int(t),
            "provenance": info.provenance, **per_track[t],
        })
        aid += 1
    file_names = video.file_names or [f"{video.uid}/{i:05d}.jpg" for i in range(n)]
    vid = {
        "id": video_id, "video_uid": video.uid, "width": video.width, "height": video.height, "length": n,
        "fps": video.fps, "file_names": file_names, "config_hash": video.config_hash,
        "empty_frames": sorted(int(i) for i in video.empty_frames), **video.extra,
    }
    return {
        "info": {"format": FORMAT, "format_version": FORMAT_VERSION,
                 "date_created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")},
        "videos": [vid],
        "categories": vocab.to_categories_json(used),
        "annotations": annotations,
    }


def merge(documents: list[dict], *, vocab: Vocabulary | None = None) -> dict:
    """Concatenate release documents, renumbering video and annotation ids."""
    vocab = vocab or master()
    videos, annotations, used = [], [], set()
    cat_names = {}
    for doc in documents:
        for c in doc["categories"]:
            cat_names[c["id"]] = c["name"]
        vid_map = {}
        for v in doc["videos"]:
            nv = dict(v, id=len(videos) + 1)
            vid_map[v["id"]] = nv["id"]
            videos.append(nv)
        for a in doc["annotations"]:
            annotations.append(dict(a, id=len(annotations) + 1, video_id=vid_map[a["video_id"]]))
            used.add(cat_names[a["category_id"]])
    return {
        "info": {"format": FORMAT, "format_version": FORMAT_VERSION,
                 "date_created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")},
        "videos": videos,
        "categories": vocab.to_categories_json(used),
        "annotations": annotations,
    }


# -- reading ----------------------------------------------------------------------------------
def load(source: str | Path | dict) -> dict:
    """Read and structurally validate a release document (path or already-parsed dict)."""
    if isinstance(source, dict):
        doc = source
        where = "document"
    else:
        where = str(source)
        try:
            doc = json.loads(Path(source).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise FormatError(f"{where}: no such file") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"{where}: not a JSON release document ({exc})") from exc
    validate_structure(doc, where)
    return doc


def validate_structure(doc: dict, where: str = "document") -> None:
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: top level must be an object")
    for k in ("videos", "categories", "annotations"):
        if not isinstance(doc.get(k), list):
            raise FormatError(f"{where}: missing list {k!r} (YouTube-VIS needs videos, categories, annotations)")
    videos = {}
    for v in doc["videos"]:
        for k in ("id", "width", "height", "length"):
            if k not in v:
                raise FormatError(f"{where}: video {v.get('id')!r} lacks {k!r}")
        videos[v["id"]] = v
    cats = {c["id"] for c in doc["categories"]}
    for a in doc["annotations"]:
        vid = videos.get(a.get("video_id"))
        if vid is None:
            raise FormatError(f"{where}: annotation {a.get('id')} refers to unknown video {a.get('video_id')!r}")
        if a.get("category_id") not in cats:
            raise FormatError(f"{where}: annotation {a.get('id')} has category {a.get('category_id')!r} not in categories")
        segs = a.get("segmentations")
        if not isinstance(segs, list) or len(segs) != vid["length"]:
            raise FormatError(
                f"{where}: annotation {a.get('id')} has {len(segs) if isinstance(segs, list) else 'no'} "
                f"segmentations for a video of {vid['length']} frames"
            )
        for f, s in enumerate(segs):
            if s is None:
                continue
            if not isinstance(s, dict) or "counts" not in s or list(s.get("size", [])) != [vid["height"], vid["width"]]:
                raise FormatError(
                    f"{where}: annotation {a.get('id')} frame {f}: segmentation must be an RLE of size "
                    f"[{vid['height']}, {vid['width']}]"
                )


def track_id_of(annotation: dict) -> int:
    return int(annotation.get("track_id", annotation["id"]))


def category_names(doc: dict) -> dict[int, str]:
    return {c["id"]: c["name"] for c in doc["categories"]}


def video_idmaps(doc: dict, video_index: int = 0, *, overlap: str = "error") -> Iterator[np.ndarray]:
    """Per-frame uint16 id maps (value = track id) of one video of a release document.

    ``overlap``: ``"error"`` raises on overlapping masks (released data never overlaps);
    ``"smaller_wins"`` resolves overlaps the method's way (for user-provided prompts).
    """
    video = doc["videos"][video_index]
    anns = [a for a in doc["annotations"] if a["video_id"] == video["id"]]
    h, w = video["height"], video["width"]
    for f in range(video["length"]):
        present = [(track_id_of(a), a["segmentations"][f]) for a in anns if a["segmentations"][f] is not None]
        idmap = np.zeros((h, w), np.uint16)
        if present:
            rles = [r for _, r in present]
            if overlap == "error" and len(rles) > 1 and rlemod.merge_area(rles) != sum(rlemod.area(r) for r in rles):
                raise FormatError(f"video {video.get('video_uid', video['id'])} frame {f}: masks of tracks overlap")
            stack = rlemod.decode_many(rles)
            order = range(len(present))
            if overlap == "smaller_wins":  # paint large first, small last
                order = sorted(order, key=lambda k: -rlemod.area(rles[k]))
            for k in order:
                idmap[stack[:, :, k] > 0] = present[k][0]
        yield idmap


def video_tracks(doc: dict, video_index: int = 0) -> dict[int, TrackInfo]:
    video = doc["videos"][video_index]
    names = category_names(doc)
    return {
        track_id_of(a): TrackInfo(track_id_of(a), names[a["category_id"]], a.get("provenance", {}))
        for a in doc["annotations"] if a["video_id"] == video["id"]
    }
