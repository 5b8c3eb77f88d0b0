"""qa: the video's labels in the release format, what needs a human, and a preview.

Outputs: ``annotations.json`` (one video, release format), ``flags.json`` (what a reviewer should
look at, with the frames), ``review/`` (a crop of each flagged object at its worst frame) and
``preview.mp4`` (masks, ids and class names drawn over the frames). The id maps are the refine
stage's; they are referenced, not copied.

Flags, beyond the method's coverage check [M §1.4, §6 row 10]:

* ``unknown_label`` / ``verifier_error``: the label could not be decided or was rejected;
* ``short_track``: an object seen for less than ``qa.min_track_seconds``;
* ``coverage_dip``: frames whose coverage stays under rho after refinement;
* ``seam_discontinuity``: rows where the image continues across the left/right border but the
  ids do not (an object split by the seam);
* ``fragmented``: a thing whose mask falls into several sizeable seam-aware pieces;
* ``camera_motion``: frames where the camera rotation could not be estimated, one flag per
  reason (``uniform``: no texture, e.g. a grey or black frame; ``cut``: a new scene, whose labels
  were re-proposed with new ids; ``too_few_matches`` / ``low_inliers``: motion blur, a large
  object filling the view) — the propagator followed those frames by flow alone (issue 10).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import find_objects
from tqdm import tqdm

from tasks.config import PipelineConfig, QaConfig
from tasks.formats import idmap as idmap_png
from tasks.formats import ytvis
from tasks.geometry.components import wrap_bbox, wrap_components
from tasks.labeling.coverage import coverage
from tasks.labeling.tracks import tracks_from_json
from tasks.preview import render
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.video.frames import Mp4Writer
from tasks.video.framestore import Frames, encode_jpeg
from tasks.vocabulary import UNKNOWN

# The flags' thresholds are QaConfig fields (qa.seam_color_tol, qa.seam_rows_flag,
# qa.fragment_share, qa.max_review_crops): they change this stage's outputs, so they name the run.


def seam_mismatch(frame: np.ndarray, idmap: np.ndarray, color_tol: float = QaConfig().seam_color_tol) -> float:
    """Share of rows where the image continues across the seam (mean RGB difference of the two
    border pixels under ``color_tol``) but the id changes."""
    left, right = frame[:, 0].astype(np.float32), frame[:, -1].astype(np.float32)
    continuous = np.abs(left - right).mean(axis=1) < color_tol
    a, b = idmap[:, 0], idmap[:, -1]
    relevant = continuous & ((a > 0) | (b > 0))
    if not relevant.any():
        return 0.0
    return float((relevant & (a != b)).sum() / relevant.sum())


def _fragments(mask: np.ndarray, share: float) -> int:
    """Sizeable seam-aware pieces of a mask: pieces holding at least ``share`` of its area (given
    on the object's rows only: the count is the same, and the work is the object's, not the frame's)."""
    comp, n = wrap_components(mask, raster_order=False)
    if n <= 1:
        return n
    areas = np.bincount(comp.ravel())[1:]
    return int((areas >= share * areas.sum()).sum())


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    frames = Frames(store, inputs.output_key(store, "decode", "frames"))
    n, fps, width, height = len(frames), frames.fps, frames.width, frames.height
    iprefix = inputs.output_key(store, "refine", "idmaps")
    tracks = tracks_from_json(store.get_json(inputs.output_key(store, "refine", "tracks")))
    events = store.get_json(inputs.output_key(store, "refine", "events"))
    rho = float(events["rho"])
    names = {k: t.category for k, t in tracks.items()}
    qcfg = config.qa

    present: dict[int, list[int]] = {}
    worst_frame: dict[int, tuple[int, int]] = {}  # track -> (area, frame) of its largest view
    empty_frames, dips, seam_frames = [], [], []
    fragmented: dict[int, list[int]] = {}
    prev_w = min(config.qa.preview_width, width)
    prev_w -= prev_w % 4   # H.264 (yuv420p) needs an even width and an even height (width / 2)
    things = np.zeros(max(tracks, default=0) + 1, bool)
    for k, tr in tracks.items():
        things[k] = tr.isthing
    source = store.get_json(inputs.output_key(store, "ingest", "source"))
    info = ytvis.VideoInfo(
        uid=inputs.video_id, width=width, height=height, length=n, fps=fps,
        file_names=[f"{inputs.video_id}/{i:05d}.jpg" for i in range(n)], config_hash=config.hash,
        # filled by the frame pass below; build_video reads it after the last frame
        empty_frames=empty_frames, extra={"source_key": source["key"], "source_sha256": source["sha256"]},
    )
    track_info = {k: ytvis.TrackInfo(k, t.category, dict(t.provenance, origin=t.origin, born=t.born))
                  for k, t in tracks.items()}

    def frame_pass(mp4, bar):
        """Every frame once: its id map decoded once for the flags, the preview and the release."""
        for t, frame in enumerate(frames.iter(0)):
            idm = idmap_png.decode_png(store.get_bytes(f"{iprefix}{t:05d}.png"))
            counts = np.bincount(idm.ravel())
            ids = np.flatnonzero(counts)
            if not ids.size or (ids.size == 1 and ids[0] == 0):
                empty_frames.append(t)
            bands = find_objects(idm)
            for tid in ids[ids > 0].tolist():
                c = int(counts[tid])
                present.setdefault(tid, []).append(t)
                if c > worst_frame.get(tid, (0, 0))[0]:
                    worst_frame[tid] = (c, t)
                if tid < things.size and things[tid] and _fragments(idm[bands[tid - 1][0]] == tid, qcfg.fragment_share) > 1:
                    fragmented.setdefault(tid, []).append(t)
            if coverage(idm, config.refine.coverage) < rho:
                dips.append(t)
            if seam_mismatch(frame, idm, qcfg.seam_color_tol) > qcfg.seam_rows_flag:
                seam_frames.append(t)
            mp4.write(render(frame, idm, names, width=prev_w))
            bar.update(1)
            yield idm

    with tempfile.TemporaryDirectory(prefix="l360-qa-") as tmp:
        preview_path = Path(tmp) / "preview.mp4"
        bar = tqdm(total=n, desc="qa", unit="frame", disable=not inputs.params.get("progress") or None)
        with Mp4Writer(preview_path, prev_w, prev_w // 2, fps) as mp4:
            doc = ytvis.build_video(info, frame_pass(mp4, bar), track_info)
        bar.close()
        writer.put_file("preview.mp4", preview_path, "video/mp4")

    flags = []
    min_frames = max(1, int(round(config.qa.min_track_seconds * fps)))
    for tid, tr in sorted(tracks.items()):
        if tid not in present:
            continue
        if tr.category == UNKNOWN:
            flags.append({"type": "unknown_label", "track": tid, "frames": _runs(present[tid]),
                          "message": "no class could be decided; name it or delete the object"})
        errs = [p.get("verdict", {}).get("error") for p in tr.provenance.get("parts", []) if p.get("verdict", {}).get("error")]
        if errs and tr.category == UNKNOWN:
            flags[-1]["reason"] = errs[0]
        if len(present[tid]) < min_frames:
            flags.append({"type": "short_track", "track": tid, "frames": _runs(present[tid]),
                          "message": f"seen on {len(present[tid])} frames only; a flicker or a real object?"})
        if tid in fragmented:
            flags.append({"type": "fragmented", "track": tid, "frames": _runs(fragmented[tid]),
                          "message": "the mask falls into separate pieces; two objects sharing an id?"})
    if dips:
        flags.append({"type": "coverage_dip", "frames": _runs(dips),
                      "message": f"coverage under rho={rho:.3f} after refinement; unlabeled regions remain"})
    if seam_frames:
        flags.append({"type": "seam_discontinuity", "frames": _runs(seam_frames),
                      "message": "ids change across the left/right border where the image continues"})
    flags.extend(camera_flags(_camera_frames(store, inputs)))

    crops = 0
    for f in flags:
        tid = f.get("track")
        if tid is None or crops >= qcfg.max_review_crops or tid not in worst_frame:
            continue
        t = worst_frame[tid][1]
        crop = _crop(frames.get(t), idmap_png.decode_png(store.get_bytes(f"{iprefix}{t:05d}.png")) == tid)
        if crop is not None:
            f["crop"] = writer.put_bytes(f"review/track{tid:05d}_frame{t:05d}.jpg", encode_jpeg(crop, 90), "image/jpeg")
            crops += 1

    writer.put_json("annotations.json", doc)
    writer.put_json("flags.json", {"video_id": inputs.video_id, "rho": rho, "flags": flags})
    counts: dict[str, int] = {}
    for f in flags:
        counts[f["type"]] = counts.get(f["type"], 0) + 1
    return StageOutput(
        outputs={"annotations": writer.key("annotations.json"), "flags": writer.key("flags.json"),
                 "preview": writer.key("preview.mp4"), "review": writer.key("review/"), "idmaps": iprefix,
                 "frames": inputs.output_key(store, "decode", "frames")},
        stats={"frames": n, "objects": len(doc["annotations"]), "flags": counts, "empty_frames": len(empty_frames),
               "coverage_dips": len(dips), "seam_discontinuity_frames": len(seam_frames)},
    )


_CAMERA_MESSAGES = {
    "cut": "a new scene starts here: its objects were proposed anew, with new ids (nothing dragged across)",
    "uniform": "no texture to measure the camera on (a grey or black frame): followed by optical flow alone",
    "too_few_matches": "too little in common with the previous frame to measure the camera rotation: "
                       "followed by optical flow alone",
    "low_inliers": "the camera rotation was unreliable (motion blur, or a large object filling the view): "
                   "followed by optical flow alone",
}


def camera_flags(camera: list[dict]) -> list[dict]:
    """One ``camera_motion`` flag per failure reason, with its frames and the worst inlier ratio."""
    by_reason: dict[str, list[dict]] = {}
    for c in camera:
        if c.get("frame", 0) > 0 and not c.get("ok", True) and c.get("reason") != "not_estimated":
            by_reason.setdefault(str(c.get("reason")), []).append(c)
        if c.get("cut") and c.get("reason") != "cut":   # a new scene after textureless frames
            by_reason.setdefault("cut", []).append(c)
    out = []
    for reason, recs in sorted(by_reason.items()):
        out.append({"type": "camera_motion", "reason": reason, "frames": _runs([c["frame"] for c in recs]),
                    "min_inlier_ratio": round(min(float(c.get("inlier_ratio", 0.0)) for c in recs), 4),
                    "message": _CAMERA_MESSAGES.get(reason, f"the camera rotation could not be estimated ({reason})")})
    return out


def _camera_frames(store: ObjectStore, inputs: StageInputs) -> list[dict]:
    try:
        key = inputs.output_key(store, "refine", "camera")
    except KeyError:   # a run committed before camera motion was recorded
        return []
    return store.get_json(key).get("frames", [])


def _runs(frames: list[int]) -> list[list[int]]:
    """[1,2,3,7,8] -> [[1,3],[7,8]]: frame ranges for a reviewer."""
    out: list[list[int]] = []
    for f in frames:
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


def _crop(frame: np.ndarray, mask: np.ndarray, margin: int = 24) -> np.ndarray | None:
    box = wrap_bbox(mask)
    if box is None:
        return None
    x, y, w, h = box
    W = frame.shape[1]
    cols = np.arange(x - margin, x + w + margin) % W
    rows = slice(max(0, y - margin), min(frame.shape[0], y + h + margin))
    crop = frame[rows][:, cols].copy()
    m = mask[rows][:, cols]
    edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    crop[edge] = (255, 0, 255)
    return crop
