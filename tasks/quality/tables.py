"""Tables the quality gate validates, built from release documents.

Per video: ``frames`` (one row per frame), ``masks`` (one row per object and frame),
``tracks`` (one row per object). Per release: ``videos`` and ``annotations``. Every number a
suite checks is measured here from the RLEs themselves (pycocotools), never copied from the
declared fields, so a corrupted area, an overlap or a missing frame shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.formats import rle as rlemod
from tasks.formats.ytvis import track_id_of
from tasks.geometry.erp import row_solid_angles


def video_tables(doc: dict, video_index: int = 0) -> dict[str, pd.DataFrame]:
    video = doc["videos"][video_index]
    uid = video.get("video_uid", str(video["id"]))
    n, h, w = int(video["length"]), int(video["height"]), int(video["width"])
    anns = [a for a in doc["annotations"] if a["video_id"] == video["id"]]
    empty = set(int(i) for i in video.get("empty_frames", []))
    wrow = row_solid_angles(h, w)
    per_frame_rles: list[list[dict]] = [[] for _ in range(n)]
    mask_rows = []
    for a in anns:
        segs = a["segmentations"]
        areas = a.get("areas") or [None] * len(segs)
        for f, s in enumerate(segs):
            if s is None:
                continue
            if f < n:
                per_frame_rles[f].append(s)
            m = rlemod.decode(s)
            mask_rows.append({
                "video_uid": uid, "track_id": track_id_of(a), "annotation_id": a["id"], "frame": f,
                "category_id": a["category_id"],
                "area": -1 if f >= len(areas) or areas[f] is None else int(areas[f]),
                "rle_area": int(rlemod.area(s)),
                "sphere_area": float(m.sum(axis=1) @ wrow),
            })
    frame_rows = []
    for f in range(n):
        rles = per_frame_rles[f]
        total = sum(rlemod.area(r) for r in rles)
        union = rlemod.merge_area(rles)
        if rles:
            masks = np.zeros((h, w), bool)
            for r in rles:
                masks |= rlemod.decode(r)
            cov = float(masks.sum(axis=1) @ wrow / (4 * np.pi))
        else:
            cov = 0.0
        if rles and f in empty:
            status = "inconsistent"  # declared empty but holds masks
        elif rles:
            status = "labeled"
        elif f in empty:
            status = "empty"
        else:
            status = "missing"
        frame_rows.append({"video_uid": uid, "frame": f, "objects": len(rles), "status": status,
                           "overlap_px": int(total - union), "coverage_sphere": cov,
                           "has_file_name": f < len(video.get("file_names", []))})
    track_rows = [{
        "video_uid": uid, "track_id": track_id_of(a), "annotation_id": a["id"], "category_id": a["category_id"],
        "segmentations_len": len(a["segmentations"]), "video_length": n,
        "present_frames": sum(1 for s in a["segmentations"] if s is not None),
    } for a in anns]
    return {
        "frames": pd.DataFrame(frame_rows, columns=["video_uid", "frame", "objects", "status", "overlap_px",
                                                    "coverage_sphere", "has_file_name"]),
        "masks": pd.DataFrame(mask_rows, columns=["video_uid", "track_id", "annotation_id", "frame", "category_id",
                                                  "area", "rle_area", "sphere_area"]),
        "tracks": pd.DataFrame(track_rows, columns=["video_uid", "track_id", "annotation_id", "category_id",
                                                    "segmentations_len", "video_length", "present_frames"]),
    }


def release_tables(doc: dict, splits: dict[str, list[str]]) -> dict[str, pd.DataFrame]:
    split_of: dict[str, list[str]] = {}
    for s, uids in splits.items():
        for u in uids:
            split_of.setdefault(u, []).append(s)
    n_anns: dict[int, int] = {}
    for a in doc["annotations"]:
        n_anns[a["video_id"]] = n_anns.get(a["video_id"], 0) + 1
    videos = pd.DataFrame([{
        "video_uid": v.get("video_uid", str(v["id"])), "video_id": v["id"], "length": int(v["length"]),
        "file_names": len(v.get("file_names", [])), "width": int(v["width"]), "height": int(v["height"]),
        "is_erp": int(v["width"]) == 2 * int(v["height"]),
        "split": ",".join(split_of.get(v.get("video_uid", str(v["id"])), [])) or "none",
        "annotations": n_anns.get(v["id"], 0),
    } for v in doc["videos"]], columns=["video_uid", "video_id", "length", "file_names", "width", "height", "is_erp",
                                        "split", "annotations"])
    annotations = pd.DataFrame([{"annotation_id": a["id"], "video_id": a["video_id"], "category_id": a["category_id"]}
                                for a in doc["annotations"]], columns=["annotation_id", "video_id", "category_id"])
    return {"videos": videos, "annotations": annotations}
