"""``review export --format labelstudio``: one Label Studio task per frame, every object a brush mask.

Label Studio's video labeling is boxes only (its ``<Video>`` + ``<VideoRectangle>``), so a mask
track cannot go out as a video task; what can is each frame as an image task with brush masks
(``brushlabels``, Label Studio's own RLE, encoded by ``label_studio_converter.brush.mask2rle``,
the converter Label Studio publishes). The object's id travels in the result's ``id``
(``t{track_id}``) and ``meta``, the checker's comment in ``meta.comment``; ``config.xml`` is the
labeling configuration to paste into the project (one brush label per class of the video).

What does not survive the tool: ids across frames are ours to keep (Label Studio links nothing
between image tasks). Corrections therefore come back through CVAT or the release JSON; this
export is for looking at and fixing single frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from tasks.formats import idmap as idmap_png
from tasks.review.checker import check_run
from tasks.review.export import _prepare_out, run_parts

FROM_NAME = "mask"
TO_NAME = "image"


def labeling_config(labels: list[str]) -> str:
    items = "\n".join(f"    <Label value={quoteattr(lab)}/>" for lab in sorted(set(labels)))
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{items}\n  </BrushLabels>\n</View>\n')


def frame_task(image: str, idmap: np.ndarray, categories: dict[int, str], comments: dict[int, str], *,
               frame: int, video_id: str, run: str) -> dict:
    from label_studio_converter.brush import mask2rle  # the package import is slow (~10 s): only here

    h, w = idmap.shape
    result = []
    for tid in np.unique(idmap[idmap > 0]).tolist():
        rle = mask2rle(((idmap == tid) * 255).astype(np.uint8))
        result.append({"id": f"t{tid}", "type": "brushlabels", "from_name": FROM_NAME, "to_name": TO_NAME,
                       "original_width": w, "original_height": h, "image_rotation": 0,
                       "value": {"format": "rle", "rle": [int(x) for x in rle], "brushlabels": [categories[tid]]},
                       "meta": {"track_id": tid, **({"comment": comments[tid]} if tid in comments else {})}})
    return {"data": {"image": image, "video_id": video_id, "run": run, "frame": frame},
            "predictions": [{"model_version": f"leader360v {run}", "result": result}]}


def export_labelstudio(store, video_id: str, run: str, out: Path, *, config=None, comments: dict | None = None) -> dict:
    out = _prepare_out(out)
    _, frames, iprefix, tracks = run_parts(store, video_id, run)
    comments = comments or check_run(store, video_id, run, config)
    per_track: dict[int, str] = {}
    for c in comments["comments"]:
        for k in ([c["track"]] if "track" in c else c.get("tracks", [])):
            per_track[k] = c["text"] if k not in per_track else f"{per_track[k]} | {c['text']}"
    cats = {k: t.category for k, t in tracks.items()}
    images = out / "images"
    images.mkdir(exist_ok=True)
    tasks = []
    for t in range(len(frames)):
        name = f"frame_{t:06d}.jpg"
        (images / name).write_bytes(store.get_bytes(frames.key(t)))
        idm = idmap_png.decode_png(store.get_bytes(f"{iprefix}{t:05d}.png"))
        tasks.append(frame_task(f"/data/local-files/?d=images/{name}", idm, cats, per_track, frame=t,
                                video_id=video_id, run=run))
    (out / "tasks.json").write_text(json.dumps(tasks), encoding="utf-8")
    (out / "config.xml").write_text(labeling_config([t.category for t in tracks.values() if t.active]), encoding="utf-8")
    (out / "comments.json").write_text(json.dumps(comments, indent=1, ensure_ascii=False), encoding="utf-8")
    return {"format": "labelstudio", "video_id": video_id, "run": run, "out": str(out), "frames": len(tasks),
            "tasks": str(out / "tasks.json"), "config": str(out / "config.xml"), "images": str(images),
            "comments": len(comments["comments"]), "summary": comments["summary"]}
