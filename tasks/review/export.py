"""``review export``: a run's labels, frames and the checker's comments, as a labeling tool's task.

* ``cvat``: ``annotations.xml`` (CVAT for video 1.1, mask tracks, every shape a keyframe; see
  :mod:`tasks.review.cvat`), ``images/frame_NNNNNN.jpg`` (the labeled frames, named as CVAT
  names a video task's frames), ``release.json`` (the project's own format), ``comments.json``.
  In CVAT: create a task from ``images/`` with the labels of ``annotations.xml``, then
  *Upload annotations* -> *CVAT 1.1* with ``annotations.xml``; when done, *Export task dataset*
  -> *CVAT for video 1.1* and ``python -m tasks review import annotations.xml --video-id ID``.
* ``labelstudio``: see :mod:`tasks.review.labelstudio`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.errors import UsageError
from tasks.formats import idmap as idmap_png
from tasks.labeling.tracks import tracks_from_json
from tasks.review import cvat
from tasks.review.checker import check_run
from tasks.stages import runner
from tasks.video.framestore import Frames


def _prepare_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_parts(store, video_id: str, run: str):
    qa = runner.load_manifest(store, video_id, run, "qa")
    refine = runner.load_manifest(store, video_id, run, "refine")
    decode = runner.load_manifest(store, video_id, run, "decode")
    if qa is None or refine is None or decode is None:
        from tasks.errors import MissingUpstream

        raise MissingUpstream(f"run {run} of video {video_id} has no QA output; run the pipeline up to qa first")
    frames = Frames(store, runner.output_key(store, decode, "frames"))
    iprefix = runner.output_key(store, refine, "idmaps")
    tracks = tracks_from_json(store.get_json(runner.output_key(store, refine, "tracks")))
    return qa, frames, iprefix, tracks


def task_name(video_id: str, run: str) -> str:
    """The CVAT task's name: names the video and the run, so an import can check both."""
    return f"leader360v {video_id} run {run}"


def export_cvat(store, video_id: str, run: str, out: Path, *, config=None, comments: dict | None = None) -> dict:
    out = _prepare_out(out)
    qa, frames, iprefix, tracks = run_parts(store, video_id, run)
    comments = comments or check_run(store, video_id, run, config)
    n = len(frames)
    etracks = {k: cvat.ExportTrack(k, t.category) for k, t in tracks.items() if t.active}
    notes: dict[int, str] = {}
    for c in comments["comments"]:
        frames_of = {f for a, b in c.get("frames", []) for f in range(a, b + 1)}
        ids = [c["track"]] if "track" in c else c.get("tracks", [])
        if ids:
            for k in ids:
                if k in etracks:
                    e = etracks[k]
                    e.comment = c["text"] if not e.comment else f"{e.comment} | {c['text']}"
                    e.comment_frames |= frames_of
        elif frames_of:
            f0 = min(frames_of)
            notes[f0] = c["text"] if f0 not in notes else f"{notes[f0]} | {c['text']}"
    images = out / "images"
    images.mkdir(exist_ok=True)
    for t in range(n):
        (images / f"frame_{t:06d}.jpg").write_bytes(store.get_bytes(frames.key(t)))
    xml = cvat.build_xml(name=task_name(video_id, run), source=f"leader360v video {video_id}",
                         width=frames.width, height=frames.height, length=n,
                         labels=[t.label for t in etracks.values()],
                         idmaps=(idmap_png.decode_png(store.get_bytes(f"{iprefix}{t:05d}.png")) for t in range(n)),
                         tracks=etracks, frame_notes=notes)
    (out / "annotations.xml").write_bytes(xml)
    (out / "release.json").write_bytes(store.get_bytes(runner.output_key(store, qa, "annotations")))
    (out / "comments.json").write_text(json.dumps(comments, indent=1, ensure_ascii=False), encoding="utf-8")
    return {"format": "cvat", "video_id": video_id, "run": run, "out": str(out), "frames": n,
            "tracks": len(etracks), "annotations": str(out / "annotations.xml"), "images": str(images),
            "release": str(out / "release.json"), "comments": len(comments["comments"]), "summary": comments["summary"]}
