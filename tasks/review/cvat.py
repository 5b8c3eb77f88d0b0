"""CVAT for video 1.1 XML: mask tracks out (export), mask tracks back in (corrections).

Written the way CVAT's own exporter writes a video task (cvat/apps/dataset_manager/formats/cvat.py):
one ``<track>`` per object with its label, and one ``<mask>`` per frame holding the object, each
with ``keyframe="1"`` -- CVAT does not interpolate masks, and a keyframe on every shape means an
edited frame can never be overwritten by a neighbour's shape. When an object leaves the view an
``outside="1"`` keyframe ends it, so CVAT does not extend it to the next frames.

A mask is CVAT's ``rle``: run lengths over the mask's bounding box (``left``, ``top``, ``width``,
``height``; right = left + width - 1), row by row, starting with a run of zeros.

The project's track id travels as the ``track_id`` attribute of every shape (CVAT renumbers its
own ``<track id>`` on every export, so it cannot carry ours); the checker's comments travel as the
``review_comment`` attribute of the shapes they concern, and comments about whole frames as
``<tag label="review_note">`` on the first frame they concern.
"""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

FORMAT_VERSION = "1.1"
TRACK_ID_ATTR = "track_id"
COMMENT_ATTR = "review_comment"
NOTE_LABEL = "review_note"


def mask_to_rle(mask: np.ndarray) -> tuple[str, int, int, int, int] | None:
    """``(rle, left, top, width, height)`` of a bool mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    crop = mask[top:bottom + 1, left:right + 1].ravel().astype(np.int8)
    # run boundaries: where the value changes; the first run counts zeros (0 when the crop starts with a one)
    change = np.flatnonzero(np.diff(crop)) + 1
    bounds = np.concatenate([[0], change, [crop.size]])
    runs = np.diff(bounds).tolist()
    if crop[0] == 1:
        runs = [0] + runs
    return ",".join(str(int(r)) for r in runs), left, top, right - left + 1, bottom - top + 1


def rle_to_mask(rle: str, left: int, top: int, width: int, height: int, img_h: int, img_w: int) -> np.ndarray:
    """The inverse of :func:`mask_to_rle`, placed on an ``img_h`` x ``img_w`` canvas."""
    try:
        runs = [int(x) for x in rle.split(",")] if rle.strip() else []
    except ValueError:
        raise ValueError("rle holds something other than comma-separated integers") from None
    if any(r < 0 for r in runs) or sum(runs) != width * height:
        raise ValueError(f"rle covers {sum(runs)} pixels, its box {width}x{height} has {width * height}")
    if left < 0 or top < 0 or width <= 0 or height <= 0 or left + width > img_w or top + height > img_h:
        raise ValueError(f"mask box left={left} top={top} width={width} height={height} is outside the "
                         f"{img_w}x{img_h} frame")
    values = np.zeros(len(runs), np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, runs).astype(bool)
    out = np.zeros((img_h, img_w), bool)
    out[top:top + height, left:left + width] = flat.reshape(height, width)
    return out


@dataclass
class ExportTrack:
    track_id: int
    label: str
    comment: str | None = None           # the checker's comment on this track
    comment_frames: set[int] = field(default_factory=set)   # frames the comment concerns (all when empty)


def build_xml(*, name: str, source: str, width: int, height: int, length: int, labels: list[str],
              idmaps: Iterable[np.ndarray], tracks: dict[int, ExportTrack],
              frame_notes: dict[int, str] | None = None) -> bytes:
    """The whole ``annotations.xml`` of a CVAT video task."""
    shapes: dict[int, list[tuple[int, tuple | None]]] = {t: [] for t in tracks}
    last_seen: dict[int, int] = {}
    n = 0
    for f, idm in enumerate(idmaps):
        n += 1
        ids = np.unique(idm)
        present = set(ids[ids > 0].tolist())
        for tid in present:
            if tid not in tracks:
                raise ValueError(f"frame {f} holds track {tid}, which has no track description")
            shapes[tid].append((f, mask_to_rle(idm == tid)))
            last_seen[tid] = f
        for tid, seen in list(last_seen.items()):
            if seen == f - 1 and tid not in present:   # left the view: end it here
                shapes[tid].append((f, None))
    if n != length:
        raise ValueError(f"got {n} id maps for a task of {length} frames")

    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = FORMAT_VERSION
    meta = ET.SubElement(root, "meta")
    task = ET.SubElement(meta, "task")
    for tag, text in (("id", "0"), ("name", name), ("size", str(length)), ("mode", "interpolation"),
                      ("overlap", "0"), ("bugtracker", ""), ("flipped", "False"),
                      ("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
                      ("start_frame", "0"), ("stop_frame", str(length - 1)), ("frame_filter", "")):
        ET.SubElement(task, tag).text = text
    labs = ET.SubElement(task, "labels")
    for lab in sorted(set(labels)):
        el = ET.SubElement(labs, "label")
        ET.SubElement(el, "name").text = lab
        ET.SubElement(el, "type").text = "mask"
        attrs = ET.SubElement(el, "attributes")
        _attr_spec(attrs, TRACK_ID_ATTR, "number", "False", "0", "0\n65535\n1")
        _attr_spec(attrs, COMMENT_ATTR, "text", "True", "", "")
    note = ET.SubElement(labs, "label")
    ET.SubElement(note, "name").text = NOTE_LABEL
    ET.SubElement(note, "type").text = "tag"
    _attr_spec(ET.SubElement(note, "attributes"), "comment", "text", "True", "", "")
    size = ET.SubElement(task, "original_size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(task, "source").text = source
    ET.SubElement(meta, "dumped").text = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

    for k, tid in enumerate(sorted(t for t in tracks if shapes[t])):
        tr = tracks[tid]
        el = ET.SubElement(root, "track", id=str(k), label=tr.label, source="auto")
        for f, shape in shapes[tid]:
            if shape is None:
                # an outside keyframe needs a geometry: CVAT repeats the last one
                prev = next(s for g, s in reversed(shapes[tid]) if s is not None and g < f)
                rle, left, top, w, h = prev
                outside = "1"
            else:
                rle, left, top, w, h = shape
                outside = "0"
            m = ET.SubElement(el, "mask", frame=str(f), keyframe="1", outside=outside, occluded="0", rle=rle,
                              left=str(left), top=str(top), width=str(w), height=str(h), z_order="0")
            ET.SubElement(m, "attribute", name=TRACK_ID_ATTR).text = str(tid)
            comment = tr.comment if tr.comment and (not tr.comment_frames or f in tr.comment_frames) else ""
            ET.SubElement(m, "attribute", name=COMMENT_ATTR).text = comment
    for f, text in sorted((frame_notes or {}).items()):
        t = ET.SubElement(root, "tag", frame=str(f), label=NOTE_LABEL, source="auto")
        ET.SubElement(t, "attribute", name="comment").text = text
    ET.indent(root, space="  ")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")


def _attr_spec(parent, name, input_type, mutable, default, values) -> None:
    a = ET.SubElement(parent, "attribute")
    ET.SubElement(a, "name").text = name
    ET.SubElement(a, "mutable").text = mutable
    ET.SubElement(a, "input_type").text = input_type
    ET.SubElement(a, "default_value").text = default
    ET.SubElement(a, "values").text = values


@dataclass
class ParsedTask:
    """What a CVAT video XML says, checked for shape only (the video's facts are checked by
    :mod:`tasks.review.corrections`)."""

    name: str | None
    width: int | None
    height: int | None
    size: int | None
    # per file track: (label, track_id attribute or None, [(frame, mask or None when outside)])
    tracks: list[tuple[str, int | None, list[tuple[int, np.ndarray | None]]]]
    problems: list[str]


def parse_xml(data: bytes) -> ParsedTask:
    """Read a CVAT for video 1.1 XML; every problem found is listed, not only the first."""
    problems: list[str] = []
    try:
        # no DTDs or entities in a CVAT dump: refuse them instead of expanding them (billion laughs)
        if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data:
            raise ValueError("the file declares a DOCTYPE/ENTITY, which a CVAT dump never does")
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError) as exc:
        return ParsedTask(None, None, None, None, [], [f"not a readable XML file ({exc})"])
    if root.tag != "annotations":
        return ParsedTask(None, None, None, None, [], [f"the root element is <{root.tag}>, a CVAT dump's is <annotations>"])
    version = (root.findtext("version") or "").strip()
    if version and version != FORMAT_VERSION:
        problems.append(f"CVAT XML version {version}; export the task as 'CVAT for video {FORMAT_VERSION}'")
    if root.find("image") is not None:
        problems.append("the file holds <image> elements ('CVAT for images'); export the task as "
                        f"'CVAT for video {FORMAT_VERSION}' so track ids survive")
    task = root.find("meta/task")
    if task is None:
        task = root.find("meta/job")
    name = task.findtext("name") if task is not None else None

    def _int(path: str) -> int | None:
        el = root.find(path)
        try:
            return int(el.text) if el is not None and el.text is not None else None
        except ValueError:
            return None

    width = _int("meta/task/original_size/width") or _int("meta/job/original_size/width")
    height = _int("meta/task/original_size/height") or _int("meta/job/original_size/height")
    size = _int("meta/task/size") or _int("meta/job/size")
    if width is None or height is None:
        problems.append("meta/task/original_size is missing: the frame size cannot be checked")
    tracks = []
    for el in root.findall("track"):
        label = el.get("label", "")
        where = f"track {el.get('id')} ({label})"
        tids: set[int] = set()
        shapes: list[tuple[int, np.ndarray | None]] = []
        for sh in el:
            if sh.tag != "mask":
                problems.append(f"{where}: a <{sh.tag}> shape at frame {sh.get('frame')}; only masks are labels "
                                "(draw with the brush tool, or convert the shape to a mask)")
                continue
            frame = sh.get("frame")
            try:
                f = int(frame)
            except (TypeError, ValueError):
                problems.append(f"{where}: a mask with frame={frame!r}")
                continue
            if sh.get("keyframe") != "1":
                problems.append(f"{where}: the mask at frame {f} is interpolated (keyframe=0); CVAT copied it from "
                                "an earlier keyframe. Make every frame you checked a keyframe, or delete the copies")
                continue
            for a in sh.findall("attribute"):
                if a.get("name") == TRACK_ID_ATTR and (a.text or "").strip():
                    try:
                        tids.add(int(float(a.text)))
                    except ValueError:
                        problems.append(f"{where}: track_id {a.text!r} at frame {f} is not a number")
            if sh.get("outside") == "1":
                shapes.append((f, None))
                continue
            if width is None or height is None:
                continue
            try:
                m = rle_to_mask(sh.get("rle", ""), int(sh.get("left", -1)), int(sh.get("top", -1)),
                                int(sh.get("width", 0)), int(sh.get("height", 0)), height, width)
            except ValueError as exc:
                problems.append(f"{where}: the mask at frame {f}: {exc}")
                continue
            shapes.append((f, m))
        if len(tids) > 1:
            problems.append(f"{where}: its shapes carry different track_id values {sorted(tids)}; one track is one object")
        tracks.append((label, next(iter(tids)) if len(tids) == 1 else None, shapes))
    for kind in ("polygon", "polyline", "box", "points", "ellipse", "skeleton", "cuboid"):
        for el in root.findall(kind):
            problems.append(f"a free <{kind}> at frame {el.get('frame')}; only mask tracks are labels")
    return ParsedTask(name, width, height, size, tracks, problems)

