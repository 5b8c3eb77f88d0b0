"""Prompts: masks and ids a person gave for some frames (``label --prompts FILE``).

A prompts file is a release document (YouTube-VIS + extensions) for the same video, with masks
on some frames only. Prompted objects keep their ``track_id`` and category; they are followed
from the given masks instead of being proposed anew. A prompt for an id at frame f defines that
object's whole mask at f: it overrides whatever the pipeline had there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import cv2
import numpy as np

from tasks import layout
from tasks.errors import PromptError
from tasks.formats import rle as rlemod
from tasks.formats import ytvis
from tasks.vocabulary import master


@dataclass
class Prompts:
    frames: dict[int, np.ndarray]      # frame index -> uint16 id map of the prompted objects (0 elsewhere)
    tracks: dict[int, str]             # track id -> category
    width: int
    height: int

    @property
    def max_id(self) -> int:
        return max(self.tracks, default=0)

    def at(self, frame: int, width: int) -> np.ndarray | None:
        """The prompt id map of ``frame`` at processing width ``width`` (nearest resize)."""
        m = self.frames.get(frame)
        if m is None or m.shape[1] == width:
            return m
        return cv2.resize(m, (width, width // 2), interpolation=cv2.INTER_NEAREST)


def parse(doc: dict, where: str = "prompts") -> Prompts:
    """Validate a prompts document on its own (no video needed) and decode it."""
    try:
        ytvis.validate_structure(doc, where)
    except ytvis.FormatError as exc:
        raise PromptError(str(exc)) from exc
    if len(doc["videos"]) != 1:
        raise PromptError(f"{where}: holds {len(doc['videos'])} videos; a prompts file describes exactly one video")
    video = doc["videos"][0]
    w, h = int(video["width"]), int(video["height"])
    if w != 2 * h:
        raise PromptError(f"{where}: masks are {w}x{h}, not 2:1 equirectangular")
    vocab = master()
    names = ytvis.category_names(doc)
    tracks: dict[int, str] = {}
    frames: dict[int, np.ndarray] = {}
    for a in doc["annotations"]:
        if "track_id" not in a:
            raise PromptError(f"{where}: annotation {a.get('id')} has no track_id; prompts must name their object ids")
        tid = a["track_id"]
        if not isinstance(tid, int) or isinstance(tid, bool) or not 1 <= tid <= 65535:
            raise PromptError(f"{where}: track_id {tid!r} must be an integer in 1..65535")
        if tid in tracks:
            raise PromptError(f"{where}: track_id {tid} appears in two annotations")
        cat = names[a["category_id"]]
        if cat not in vocab:
            raise PromptError(f"{where}: category {cat!r} of track {tid} is not in the master vocabulary")
        tracks[tid] = cat
        given = 0
        for f, seg in enumerate(a["segmentations"]):
            if seg is None:
                continue
            m = rlemod.decode(seg)
            if not m.any():
                raise PromptError(f"{where}: track {tid} has an empty mask at frame {f}; give a mask or null")
            idm = frames.setdefault(f, np.zeros((h, w), np.uint16))
            # overlapping prompts: the smaller mask keeps the pixels (the method's rule)
            clash = (idm > 0) & m
            if clash.any():
                other = int(np.bincount(idm[clash]).argmax())
                if int(m.sum()) > int((idm == other).sum()):
                    m = m & ~clash
            idm[m] = tid
            given += 1
        if given == 0:
            raise PromptError(f"{where}: track {tid} has no mask on any frame (an empty prompt)")
    if not tracks:
        raise PromptError(f"{where}: no annotations; an empty prompts file prompts nothing")
    return Prompts(frames, tracks, w, h)


def check_against_video(p: Prompts, n_frames: int, width: int, where: str = "prompts") -> None:
    last = max(p.frames)
    if last >= n_frames:
        raise PromptError(f"{where}: a prompt is given for frame {last}, but the video has {n_frames} frames (0..{n_frames - 1})")
    if p.width != width and p.width * (width // 2) != width * p.height:
        raise PromptError(f"{where}: masks are {p.width}x{p.height}; the labeled frames are {width}x{width // 2}")


def load_bytes(data: bytes, where: str = "prompts") -> tuple[Prompts, str]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptError(f"{where}: not a JSON release document ({exc})") from exc
    return parse(doc, where), hashlib.sha256(data).hexdigest()[:16]


def apply(idmap: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    """Overlay a prompt id map: prompted ids are redefined by their prompt masks."""
    out = idmap.copy()
    ids = np.unique(prompt)
    ids = ids[ids > 0]
    out[np.isin(out, ids)] = 0
    out[prompt > 0] = prompt[prompt > 0]
    return out


def load_prompts(store, video_id: str, config, n_frames: int, width: int) -> Prompts | None:
    """The run's prompts (``config.prompts`` names them by content hash), checked against the
    video; None when the run has none."""
    if config.prompts is None:
        return None
    p, _ = load_bytes(store.get_bytes(layout.prompts_key(video_id, config.prompts)))
    check_against_video(p, n_frames, width)
    return p
