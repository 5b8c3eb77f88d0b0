"""Manual revision (issue 15 §5): how many frames a reviewer must correct to bring a video to
J&F >= 0.95, with the corrections re-followed forward and backward (:mod:`tasks.review.refollow`),
against re-labelling it from scratch.

Synthetic clips (``tasks synth``, default 512 x 256, 3 s at 10 fps, handheld camera, several
seeds) with known ground truth. The "auto labels" are the ground truth with one injected error
each (so the count is the cost of fixing that error, not of the labeler's other mistakes):

* ``id_switch``: the two largest things trade ids from the middle frame on;
* ``missed_object``: a thing is left unlabeled on every frame;
* ``seam_split``: the object that crosses the left/right border most is two tracks, split at the
  border (its left half a new id) on every frame;
* ``wrong_class``: a thing has another class on every frame (a class edit, no frame: J&F does not
  see classes, so the row reports the class accuracy before and after);
* ``all_four``: the four at once.

The simulated reviewer repeats: score every frame (mean IoU of each true object with the label of
its id), correct the worst frame not yet corrected (it is replaced by the true labels, as a person
would draw it in CVAT), re-follow all corrections from the auto labels, measure J&F with the
project's evaluator (``tasks.metrics.evaluate``, planar J&F), until the labels are clean --
J&F >= 0.95 with no ID switch and no seam split left (``frames_to_clean``) -- or every frame was
corrected; ``frames_to_jf95`` is the count at which J&F first reached 0.95.

``from_scratch`` rows start from no labels at all and run the same loop (the same propagation
helping the person); ``by hand`` is the frame count (every frame drawn).

    .venv/bin/python tests/bench/bench_revision.py [--seeds 1 2] [--width 512] [--seconds 3] [--fps 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import decoded_rgb, emit

from tasks.backends.flow import build_propagator
from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.formats import ytvis
from tasks.metrics.evaluate import evaluate
from tasks.review.refollow import ArrayFrames, refollow
from tasks.synth import render_clip
from tasks.vocabulary import master

TARGET = 0.95


def per_frame_j(pred: np.ndarray, gt: np.ndarray) -> float:
    ids = np.unique(gt[gt > 0])
    return float(np.mean([np.count_nonzero((pred == k) & (gt == k)) / np.count_nonzero((pred == k) | (gt == k))
                          for k in ids])) if ids.size else 1.0


def document(gt_doc: dict, maps: list[np.ndarray], classes: dict[int, str]) -> dict:
    v = gt_doc["videos"][0]
    info = ytvis.VideoInfo(uid=v["video_uid"], width=v["width"], height=v["height"], length=v["length"], fps=v["fps"])
    present = {int(k) for m in maps for k in np.unique(m) if k}
    return ytvis.build_video(info, maps, {k: ytvis.TrackInfo(k, classes.get(k, "unknown")) for k in present})


def inject(kind: str, gt: list[np.ndarray], classes: dict[int, str], things: list[int]) -> tuple[list, dict]:
    base = [g.copy() for g in gt]
    cls = dict(classes)
    n = len(gt)
    w = gt[0].shape[1]
    big = sorted(things, key=lambda k: -sum(np.count_nonzero(g == k) for g in gt))
    if kind in ("id_switch", "all_four"):
        a, b = big[0], big[1]
        for t in range(n // 2, n):
            m = base[t]
            ma, mb = m == a, m == b
            m[ma], m[mb] = b, a
    if kind in ("missed_object", "all_four"):
        k = big[2]
        for m in base:
            m[m == k] = 0
    if kind in ("seam_split", "all_four"):
        k = max(np.unique(gt[0][gt[0] > 0]).tolist(),
                key=lambda i: sum(min(np.count_nonzero(g[:, :4] == i), np.count_nonzero(g[:, -4:] == i)) for g in gt))
        new = max(classes) + 1
        cls[new] = classes[k]
        for m, g in zip(base, gt):
            left = m[:, : w // 2]
            left[g[:, : w // 2] == k] = new
    if kind in ("wrong_class", "all_four"):
        k = big[3] if len(big) > 3 else big[-1]
        cls[k] = "bench" if classes[k] != "bench" else "car"
    return base, cls


def review(frames, gt, gt_doc, classes, base, base_classes, budget: int) -> dict:
    """The simulated reviewer's loop; returns frames corrected, J&F before/after, seconds."""
    cfg = PipelineConfig()
    n = len(gt)
    t0 = time.perf_counter()
    corrected: dict[int, np.ndarray] = {}
    labels = base
    cls_fixed = dict(base_classes)
    class_edits = sum(1 for k, c in base_classes.items() if k in classes and classes[k] != c)
    for k in classes:
        cls_fixed[k] = classes[k]          # a class edit costs no frame: the person renames the track
    jf0 = evaluate(document(gt_doc, base, base_classes), gt_doc)
    steps = 0
    ev = evaluate(document(gt_doc, labels, cls_fixed), gt_doc)   # after the class edit (J&F ignores classes)
    to_jf = 0 if ev["J&F"]["planar"] >= TARGET else None

    def clean(e) -> bool:
        return e["J&F"]["planar"] >= TARGET and e["id_switches"] == 0 and e["seam_split_objects"] == 0

    while not clean(ev) and len(corrected) < min(n, budget):
        scores = {t: per_frame_j(labels[t], gt[t]) for t in range(n) if t not in corrected}
        worst = min(scores, key=scores.get)
        corrected[worst] = gt[worst]
        res = refollow(frames, corrected, lambda f: base[f], build_propagator(cfg, frames.width),
                       agree_iou=cfg.review.refollow_agree_iou)
        steps += res.steps
        labels = [idmap_png.decode_png(res.frames[t]) if t in res.frames else base[t] for t in range(n)]
        ev = evaluate(document(gt_doc, labels, cls_fixed), gt_doc)
        if to_jf is None and ev["J&F"]["planar"] >= TARGET:
            to_jf = len(corrected)
    matched = [o["pred_category"] == o["category"] for o in jf0["objects"] if o["pred_track"] is not None]
    acc0 = round(float(np.mean(matched)), 3) if matched else None
    return {"frames_to_jf95": to_jf, "frames_to_clean": len(corrected) if clean(ev) else None,
            "class_edits": class_edits, "jf_before": round(jf0["J&F"]["planar"], 4),
            "jf_after": round(ev["J&F"]["planar"], 4), "jf_sphere_after": round(ev["J&F"]["sphere"], 4),
            "id_switches_before": jf0["id_switches"], "id_switches_after": ev["id_switches"],
            "seam_splits_before": jf0["seam_split_objects"], "seam_splits_after": ev["seam_split_objects"],
            "class_acc_before": acc0, "propagator_steps": steps,
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=10.0)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="l360-bench-rev-") as tmp:
        for seed in a.seeds:
            out = Path(tmp) / f"clip{seed}"
            render_clip(out, seconds=a.seconds, fps=a.fps, width=a.width, seed=seed, camera="handheld", progress=False)
            gt_doc = ytvis.load(out / "gt.json")
            gt = list(ytvis.video_idmaps(gt_doc))
            tracks = ytvis.video_tracks(gt_doc)
            classes = {k: t.category for k, t in tracks.items()}
            things = [k for k, c in classes.items() if not master().is_stuff(c)]
            frames = ArrayFrames(decoded_rgb(out / "clip.mp4"), a.fps)
            n = len(gt)
            for kind in ("id_switch", "missed_object", "seam_split", "wrong_class", "all_four"):
                base, base_classes = inject(kind, gt, classes, things)
                r = review(frames, gt, gt_doc, classes, base, base_classes, n)
                rows.append({"seed": seed, "frames": n, "start": kind, **r, "by_hand": n})
                print(rows[-1], flush=True)
            empty = [np.zeros_like(g) for g in gt]
            r = review(frames, gt, gt_doc, classes, empty, {}, n)
            rows.append({"seed": seed, "frames": n, "start": "from_scratch", **r, "by_hand": n})
            print(rows[-1], flush=True)
    summary = {}
    for kind in ("id_switch", "missed_object", "seam_split", "wrong_class", "all_four", "from_scratch"):
        sel = [r for r in rows if r["start"] == kind]
        summary[kind] = {"frames_to_jf95": [r["frames_to_jf95"] for r in sel],
                         "frames_to_clean": [r["frames_to_clean"] for r in sel], "of": [r["frames"] for r in sel]}
    summary["target_jf"] = TARGET
    emit("revision", rows, summary)


if __name__ == "__main__":
    main()
