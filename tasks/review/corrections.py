"""Corrections a person made to a run's labels: read (CVAT XML or the release JSON), checked
against the video and the run they were made on, and stored with who and when (issue 15 §3).

A corrections file may hold every frame (a CVAT task exported by ``review export`` and edited)
or only some (a release document with masks on a few frames). The frames it gives are compared
with the run the person saw: a **corrected frame** is one whose id map differs, and on it the
file is the whole truth (every object, its id, its mask). Class changes apply to the whole track.

Layout (outside ``videos/`` so no stage's cleanup touches it)::

    corrections/{video_id}/{correction_id}/record.json     who, when, from which file, what changed
    corrections/{video_id}/{correction_id}/source.xml|json the file as given
    corrections/{video_id}/{correction_id}/idmaps/NNNNN.png the corrected frames (uint16, value = track id)
    corrections/{video_id}/{correction_id}/_MANIFEST.json   written last: the import is visible from here on

The correction id is a content hash (video, run, corrected frames, classes), so importing the
same corrections again -- after an interruption, or twice -- names the same correction and the
same revised run.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from tasks import layout
from tasks.errors import CorrectionRejected, ObjectNotFound
from tasks.formats import idmap as idmap_png
from tasks.formats import rle as rlemod
from tasks.formats import ytvis
from tasks.review import cvat
from tasks.vocabulary import master

CORRECTIONS = "corrections/"
_HEX16 = re.compile(r"[0-9a-f]{16}")
_RUN = re.compile(r"run ([0-9a-f]{12})")


def corrections_prefix(video_id: str) -> str:
    return f"{CORRECTIONS}{layout.check_video_id(video_id)}/"


def correction_prefix(video_id: str, cid: str) -> str:
    return f"{corrections_prefix(video_id)}{cid}/"


@dataclass
class Given:
    """What a corrections file says, before it is compared with a run."""

    fmt: str                                # "cvat" | "release"
    frames: dict[int, np.ndarray]           # frames with at least one mask -> id map
    classes: dict[int, str]                 # track id -> category
    unnamed: list[int] = field(default_factory=list)   # tracks drawn without a track id (new objects)
    run: str | None = None                  # the run the file says it was exported from


@dataclass
class Correction:
    video_id: str
    run: str                                 # the run the person corrected
    fmt: str
    frames: dict[int, np.ndarray]            # corrected frames -> whole id map
    classes: dict[int, str]                  # category of every track the file names
    changed_classes: dict[int, str]          # existing tracks whose class the person changed
    new_tracks: list[int]

    @property
    def id(self) -> str:
        h = hashlib.sha256(f"{self.video_id}|{self.run}|".encode())
        for f in sorted(self.frames):
            h.update(f"{f}:".encode())
            h.update(np.ascontiguousarray(self.frames[f]).tobytes())
        h.update(json.dumps({str(k): v for k, v in sorted(self.classes.items())}, sort_keys=True).encode())
        return h.hexdigest()[:16]


def detect_format(data: bytes, name: str = "") -> str:
    head = data.lstrip()[:64]
    if head.startswith(b"<"):
        return "cvat"
    if head.startswith(b"{"):
        return "release"
    raise CorrectionRejected([f"{name or 'the file'} is neither CVAT XML nor a release JSON document"], name or "corrections")


def read_file(data: bytes, *, video_id: str, width: int, height: int, length: int, name: str = "corrections") -> Given:
    """Parse and check a corrections file against the video's facts; every problem is listed."""
    fmt = detect_format(data, name)
    given = _read_cvat(data, video_id, width, height, length) if fmt == "cvat" else \
        _read_release(data, video_id, width, height, length)
    problems = given.pop("problems")
    if problems:
        raise CorrectionRejected(problems, name)
    return Given(fmt=fmt, **given)


def _other_video(text: str | None, video_id: str) -> str | None:
    for m in _HEX16.findall(text or ""):
        if m != video_id:
            return m
    return None


def _read_cvat(data: bytes, video_id: str, width: int, height: int, length: int) -> dict:
    task = cvat.parse_xml(data)
    problems = list(task.problems)
    other = _other_video(task.name, video_id)
    if other:
        problems.append(f"the task is named for video {other}, not {video_id}: corrections for another video")
    if task.width is not None and (task.width, task.height) != (width, height):
        problems.append(f"frames are {task.width}x{task.height}; video {video_id} is labeled at {width}x{height}")
    if task.size is not None and task.size != length:
        problems.append(f"the task has {task.size} frames; video {video_id} has {length}")
    vocab = master()
    classes: dict[int, str] = {}
    frames: dict[int, np.ndarray] = {}
    unnamed: list[int] = []
    pending: list[tuple[str, list]] = []
    for label, tid, shapes in task.tracks:
        if label not in vocab:
            problems.append(f"label {label!r} is not in the vocabulary (tasks/data/vocabulary.json); rename it")
            continue
        if tid is None:
            pending.append((label, shapes))
            continue
        if not 1 <= tid <= 65535:
            problems.append(f"track_id {tid} must be in 1..65535")
            continue
        if tid in classes and classes[tid] != label:
            problems.append(f"track {tid} changes class ({classes[tid]} -> {label}); one object has one class "
                            "for the whole video: relabel the whole track, or draw the other object as a new track")
            continue
        classes[tid] = label
        _paint(frames, shapes, tid, problems, length, height, width)
    nxt = max(classes, default=0) + 1
    for label, shapes in pending:       # drawn in CVAT without our id: a new object
        classes[nxt] = label
        unnamed.append(nxt)
        _paint(frames, shapes, nxt, problems, length, height, width)
        nxt += 1
    return {"frames": frames, "classes": classes, "unnamed": unnamed, "problems": problems,
            "run": (_RUN.search(task.name or "") or [None, None])[1]}


def _paint(frames, shapes, tid, problems, length, height, width) -> None:
    for f, m in shapes:
        if not 0 <= f < length:
            problems.append(f"track {tid}: frame {f} is out of range (the video has frames 0..{length - 1})")
            continue
        if m is None or m.shape != (height, width) or not m.any():
            continue    # a size mismatch is reported once, for the whole file
        idm = frames.setdefault(f, np.zeros((height, width), np.uint16))
        clash = idm[m]
        clash = clash[clash > 0]
        if clash.size:
            other = int(np.bincount(clash).argmax())
            problems.append(f"frame {f}: the masks of tracks {other} and {tid} overlap ({clash.size} pixels); "
                            "every pixel belongs to one object")
            continue
        idm[m] = tid


def _read_release(data: bytes, video_id: str, width: int, height: int, length: int) -> dict:
    problems: list[str] = []
    try:
        doc = json.loads(data.decode("utf-8"))
        ytvis.validate_structure(doc, "corrections")
    except (UnicodeDecodeError, json.JSONDecodeError, ytvis.FormatError) as exc:
        return {"frames": {}, "classes": {}, "unnamed": [], "run": None,
                "problems": [f"not a release JSON document ({exc})"]}
    if len(doc["videos"]) != 1:
        return {"frames": {}, "classes": {}, "unnamed": [], "run": None,
                "problems": [f"holds {len(doc['videos'])} videos; corrections describe exactly one"]}
    v = doc["videos"][0]
    if v.get("video_uid") not in (None, video_id):
        problems.append(f"the document is for video {v.get('video_uid')}, not {video_id}: corrections for another video")
    if (v["width"], v["height"]) != (width, height):
        problems.append(f"frames are {v['width']}x{v['height']}; video {video_id} is labeled at {width}x{height}")
    if v["length"] != length:
        problems.append(f"the document has {v['length']} frames; video {video_id} has {length}")
    vocab = master()
    names = ytvis.category_names(doc)
    classes: dict[int, str] = {}
    frames: dict[int, np.ndarray] = {}
    for a in doc["annotations"]:
        if "track_id" not in a:
            problems.append(f"annotation {a.get('id')} has no track_id; name the object's id (a new number for a new object)")
            continue
        tid = a["track_id"]
        if not isinstance(tid, int) or isinstance(tid, bool) or not 1 <= tid <= 65535:
            problems.append(f"track_id {tid!r} must be an integer in 1..65535")
            continue
        cat = names.get(a["category_id"])
        if cat not in vocab:
            problems.append(f"category {cat!r} of track {tid} is not in the vocabulary (tasks/data/vocabulary.json)")
            continue
        if tid in classes and classes[tid] != cat:
            problems.append(f"track {tid} changes class ({classes[tid]} -> {cat}); one object has one class for the whole video")
            continue
        classes[tid] = cat
        segs = a["segmentations"]
        if len(segs) > length:
            problems.append(f"track {tid}: masks for {len(segs)} frames; the video has frames 0..{length - 1} (frame out of range)")
        shapes = []
        for f, seg in enumerate(segs[:length]):
            if seg is None:
                continue
            if list(seg.get("size", [])) != [height, width]:
                problems.append(f"track {tid}: the mask at frame {f} is {seg.get('size')}, frames are [{height}, {width}]")
                continue
            shapes.append((f, rlemod.decode(seg)))
        _paint(frames, shapes, tid, problems, length, height, width)
    return {"frames": frames, "classes": classes, "unnamed": [], "problems": problems, "run": v.get("config_hash")}


def compare(given: Given, *, video_id: str, run: str, base_idmap, base_tracks: dict, name: str = "corrections") -> Correction:
    """The correction a file makes to ``run``: the frames that differ, class changes, new tracks.

    ``base_idmap(f)`` gives the run's id map of frame ``f``; ``base_tracks`` its track table.
    """
    problems = []
    for tid in given.classes:
        tr = base_tracks.get(tid)
        if tr is not None and not tr.active:
            problems.append(f"track {tid} was merged into track {tr.merged_into} in run {run}; use id {tr.merged_into}")
    if given.run and given.run != run:
        problems.append(f"the file was exported from run {given.run}, not {run}; import it with --run {given.run}")
    if problems:
        raise CorrectionRejected(problems, name)
    if given.unnamed:
        # objects drawn in the tool without our id get ids no track of the run ever had (a track the
        # person deleted keeps its id out of use)
        nxt = max([*base_tracks, *[k for k in given.classes if k not in given.unnamed]], default=0) + 1
        remap = {old: nxt + i for i, old in enumerate(given.unnamed)}
        lut = np.arange(max([*remap, *remap.values(), *given.classes], default=0) + 1, dtype=np.uint16)
        for old_id, new_id in remap.items():
            lut[old_id] = new_id
        given = Given(given.fmt, {f: lut[m] for f, m in given.frames.items()},
                      {remap.get(k, k): c for k, c in given.classes.items()}, sorted(remap.values()), given.run)
    frames = {}
    for f in sorted(given.frames):
        if not np.array_equal(given.frames[f], base_idmap(f)):
            frames[f] = given.frames[f]
    changed = {t: c for t, c in given.classes.items() if t in base_tracks and base_tracks[t].category != c}
    new = sorted(t for t in given.classes if t not in base_tracks)
    if not frames and not changed and not new:
        raise CorrectionRejected([f"the file changes nothing compared with run {run}: no mask, id or class differs"], name)
    return Correction(video_id, run, given.fmt, frames, dict(given.classes), changed, new)


# -- storage -----------------------------------------------------------------------------------

def who() -> str:
    """Who imports: ``$LEADER360V_REVIEWER`` (a deployment that knows its users sets it), else the OS user."""
    name = os.environ.get("LEADER360V_REVIEWER", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def write_payload(store, c: Correction, *, source: bytes, source_name: str, author: str) -> dict:
    """Everything but the commit point; invisible until :func:`commit` writes the manifest."""
    p = correction_prefix(c.video_id, c.id)
    store.delete_prefix(p)          # leftovers of an interrupted attempt
    store.put_bytes(p + ("source.xml" if c.fmt == "cvat" else "source.json"), source)
    for f, idm in c.frames.items():
        store.put_bytes(f"{p}idmaps/{f:05d}.png", idmap_png.encode_png(idm), content_type="image/png")
    record = {"id": c.id, "video_id": c.video_id, "run": c.run, "format": c.fmt, "source_name": source_name,
              "source_sha256": hashlib.sha256(source).hexdigest(), "author": author,
              "imported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
              "frames": sorted(c.frames), "classes": {str(k): v for k, v in sorted(c.classes.items())},
              "changed_classes": {str(k): v for k, v in sorted(c.changed_classes.items())},
              "new_tracks": c.new_tracks}
    store.put_json(p + "record.json", record)
    return record


def commit(store, video_id: str, cid: str, *, revised_run: str, applies: list[str]) -> dict:
    """The commit point: from here on the correction is listed, with the run it produced."""
    manifest = {"id": cid, "video_id": video_id, "revised_run": revised_run, "applies": list(applies),
                "committed_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")}
    store.put_json(correction_prefix(video_id, cid) + layout.MANIFEST, manifest)
    return manifest


def committed(store, video_id: str) -> list[dict]:
    """Committed corrections of a video, oldest first: record + manifest."""
    out = []
    for p in store.list_prefixes(corrections_prefix(video_id)):
        try:
            m = store.get_json(p + layout.MANIFEST)
        except ObjectNotFound:
            continue    # an interrupted import: not there
        rec = store.get_json(p + "record.json")
        out.append({**rec, **m})
    return sorted(out, key=lambda r: r["committed_at"])


def load(store, video_id: str, cid: str) -> tuple[dict, dict[int, np.ndarray]]:
    p = correction_prefix(video_id, cid)
    rec = store.get_json(p + "record.json")
    frames = {f: idmap_png.decode_png(store.get_bytes(f"{p}idmaps/{f:05d}.png")) for f in rec["frames"]}
    return rec, frames
