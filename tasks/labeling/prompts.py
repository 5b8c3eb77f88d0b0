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

# Largest prompt mask accepted: a mask holds width x height pixels per prompted frame in memory,
# and the processing width is at most 8192 (VideoConfig.width); twice that covers any source.
_MAX_PROMPT_WIDTH = 16384
# Problems listed in one PromptError before "... and N more" (one failed run tells everything).
_MAX_LISTED = 10


@dataclass
class Prompts:
    frames: dict[int, np.ndarray]      # frame index -> uint16 id map of the prompted objects (0 elsewhere)
    tracks: dict[int, str]             # track id -> category
    width: int
    height: int
    video_uid: str | None = None       # the content id of the video the prompts were made for, if given
    length: int | None = None          # the frame count the prompts document declares

    @property
    def max_id(self) -> int:
        return max(self.tracks, default=0)

    def at(self, frame: int, width: int) -> np.ndarray | None:
        """The prompt id map of ``frame`` at processing width ``width`` (nearest resize)."""
        m = self.frames.get(frame)
        if m is None or m.shape[1] == width:
            return m
        return cv2.resize(m, (width, width // 2), interpolation=cv2.INTER_NEAREST)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_shape(doc, where: str) -> None:
    """The structure a prompts document must have, checked field by field before anything reads
    it, so a malformed file (a list where a mapping belongs, a size that is a string) is a
    PromptError naming the field, never a TypeError from deep inside (issue 12: fuzzed prompts)."""
    if not isinstance(doc, dict):
        raise PromptError(f"{where}: top level must be a JSON object (a release document), got {type(doc).__name__}")
    for k in ("videos", "categories", "annotations"):
        if not isinstance(doc.get(k), list):
            raise PromptError(f"{where}: missing list {k!r} (YouTube-VIS needs videos, categories, annotations)")
    if len(doc["videos"]) != 1:
        raise PromptError(f"{where}: holds {len(doc['videos'])} videos; a prompts file describes exactly one video")
    video = doc["videos"][0]
    if not isinstance(video, dict):
        raise PromptError(f"{where}: videos[0] must be an object")
    for k in ("width", "height", "length"):
        if not _is_int(video.get(k)) or video[k] <= 0:
            raise PromptError(f"{where}: video {k} must be a positive integer, got {video.get(k)!r}")
    w, h = video["width"], video["height"]
    if w != 2 * h:
        raise PromptError(f"{where}: masks are {w}x{h}, not 2:1 equirectangular")
    if w > _MAX_PROMPT_WIDTH:
        raise PromptError(f"{where}: masks are {w}x{h}; give them at most {_MAX_PROMPT_WIDTH} wide "
                          "(they are resized to the processing width anyway)")
    if not isinstance(video.get("id"), (int, str)) or isinstance(video.get("id"), bool):
        raise PromptError(f"{where}: video id must be an integer or a string, got {video.get('id')!r}")
    uid = video.get("video_uid")
    if uid is not None and not isinstance(uid, str):
        raise PromptError(f"{where}: video_uid must be a string (the video's content id), got {uid!r}")
    for i, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise PromptError(f"{where}: categories[{i}] must be an object with an integer id and a string name")
    for i, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict):
            raise PromptError(f"{where}: annotations[{i}] must be an object")
        segs = a.get("segmentations")
        if not isinstance(segs, list):
            raise PromptError(f"{where}: annotation {a.get('id')!r} has no list of segmentations")
        for f, seg in enumerate(segs):
            if seg is not None and not (isinstance(seg, dict) and isinstance(seg.get("size"), list)):
                raise PromptError(f"{where}: annotation {a.get('id')!r} frame {f}: a segmentation is an RLE "
                                  "object ({\"size\": [h, w], \"counts\": ...}) or null")
        if not isinstance(a.get("video_id"), (int, str)) or not isinstance(a.get("category_id"), (int, str)):
            raise PromptError(f"{where}: annotation {a.get('id')!r} needs a video_id and a category_id")


def _rle_counts(counts, what: str) -> list[int]:
    """The run lengths of a COCO RLE, checked: pycocotools decodes garbage without a word (an
    empty string gives a half-set mask, a list that sums short leaves the rest unset) or fails
    with ValueError/OverflowError/UnicodeEncodeError (issue 12: garbage RLE counts crashed)."""
    if isinstance(counts, list):
        if not all(_is_int(c) and c >= 0 for c in counts):
            raise PromptError(f"{what}: RLE counts must be non-negative integers")
        return counts
    if not isinstance(counts, str):
        raise PromptError(f"{what}: RLE counts must be a string (compressed) or a list of integers")
    # COCO's compressed form (maskApi.c rleFrString): 5 bits per character from '0' (48),
    # 0x20 = more follows, 0x10 on the last = negative; from the third run on, a delta.
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise PromptError(f"{what}: RLE counts end in the middle of a number")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise PromptError(f"{what}: RLE counts hold {counts[p]!r}, not a COCO compressed RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        if x < 0:
            raise PromptError(f"{what}: RLE counts decode to a negative run length")
        out.append(x)
    return out


def _decode_mask(seg: dict, h: int, w: int, what: str) -> np.ndarray:
    size = seg.get("size")
    if not isinstance(size, list) or len(size) != 2 or list(size) != [h, w]:
        raise PromptError(f"{what}: segmentation must be an RLE of size [{h}, {w}], got size {size!r}")
    runs = _rle_counts(seg.get("counts"), what)
    if sum(runs) != h * w:
        raise PromptError(f"{what}: RLE counts cover {sum(runs)} pixels; a {w}x{h} mask has {h * w}")
    return rlemod.decode({"size": [h, w], "counts": seg["counts"]})


def parse(doc: dict, where: str = "prompts") -> Prompts:
    """Validate a prompts document on its own (no video needed) and decode it.

    Refused (PromptError, exit 7), with the ids and frames named: a malformed document or mask,
    an id given twice, two ids with identical masks on a frame (one of them would silently
    vanish) and two ids whose masks overlap (which object a pixel shows is the person's call,
    not the pipeline's; issue 12 §6).
    """
    _check_shape(doc, where)
    try:
        ytvis.validate_structure(doc, where)
    except ytvis.FormatError as exc:
        raise PromptError(str(exc)) from exc
    video = doc["videos"][0]
    w, h = video["width"], video["height"]
    vocab = master()
    names = ytvis.category_names(doc)
    tracks: dict[int, str] = {}
    frames: dict[int, np.ndarray] = {}
    problems: list[str] = []
    for a in doc["annotations"]:
        if "track_id" not in a:
            raise PromptError(f"{where}: annotation {a.get('id')!r} has no track_id; prompts must name their object ids")
        tid = a["track_id"]
        if not _is_int(tid) or not 1 <= tid <= 65535:
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
            m = _decode_mask(seg, h, w, f"{where}: track {tid} frame {f}")
            if not m.any():
                raise PromptError(f"{where}: track {tid} has an empty mask at frame {f}; give a mask or null")
            idm = frames.setdefault(f, np.zeros((h, w), np.uint16))
            clash = idm[m]
            clash = clash[clash > 0]
            if clash.size:
                area = int(m.sum())
                for other, n in zip(*np.unique(clash, return_counts=True)):
                    other, n = int(other), int(n)
                    if n == area and n == int((idm == other).sum()):
                        problems.append(f"frame {f}: tracks {other} and {tid} have identical masks "
                                        f"({area} px); one object, one id")
                    else:
                        problems.append(f"frame {f}: tracks {other} and {tid} overlap on {n} px; "
                                        "each pixel belongs to one object")
            idm[m & (idm == 0)] = tid
            given += 1
        if given == 0:
            raise PromptError(f"{where}: track {tid} has no mask on any frame (an empty prompt)")
    if problems:
        more = len(problems) - _MAX_LISTED
        raise PromptError(f"{where}: prompted masks must not overlap:\n  - " + "\n  - ".join(problems[:_MAX_LISTED])
                          + (f"\n  ... and {more} more" if more > 0 else ""))
    if not tracks:
        raise PromptError(f"{where}: no annotations; an empty prompts file prompts nothing")
    return Prompts(frames, tracks, w, h, video.get("video_uid"), video["length"])


def check_against_video(p: Prompts, n_frames: int, width: int, where: str = "prompts",
                        video_id: str | None = None) -> None:
    """The prompts fit the video: made for it (``video_uid``, when both are known), frames in
    range, masks of its aspect."""
    if video_id is not None:
        check_video_uid(p, video_id, where)
    last = max(p.frames)
    if last >= n_frames:
        raise PromptError(f"{where}: a prompt is given for frame {last}, but the video has {n_frames} frames (0..{n_frames - 1})")
    if p.width != width and p.width * (width // 2) != width * p.height:
        raise PromptError(f"{where}: masks are {p.width}x{p.height}; the labeled frames are {width}x{width // 2}")


def check_video_uid(p: Prompts, video_id: str, where: str = "prompts") -> None:
    """Prompts that name another video (their ``video_uid`` is a content id, as every release
    document's) are refused: applied to this one they would label it with another video's
    objects (issue 12 §6). A document without ``video_uid`` (written by hand) is taken as given."""
    if p.video_uid is not None and p.video_uid != video_id:
        raise PromptError(f"{where}: made for video {p.video_uid} (its video_uid), but this video is {video_id}; "
                          "use the prompts of this video, or remove video_uid if they were written for it")


def load_bytes(data: bytes, where: str = "prompts") -> tuple[Prompts, str]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:   # ValueError: JSON syntax, 4300+ digit ints
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
    check_against_video(p, n_frames, width, video_id=video_id)
    return p
