"""J&F (planar and spherical), ID switches and seam splits of the CPU pipeline on synthetic clips:
*auto* (no prompts), *prompts* (``--prompts`` made from the ground truth of the first frame, what
a person correcting frame 0 would give) and *baseline* (the method as its code does it: nothing
handles the seam during propagation, tracks the re-SDR misses are dropped, a coverage drop
triggers a plain re-SDR instead of the routed MCR).

Clips: ``tasks synth`` defaults (4 s, 15 fps, 1024x512, 5 objects: a seam crossing, a pole
passage, an object appearing mid-clip and an occlusion), seeds 0..N-1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import emit, run

from tasks.formats import ytvis

PY = sys.executable
MODES = ("auto", "prompts", "baseline")
BASELINE = ["--set", "propagate.seam_aware=false", "--set", "refine.keep_unmatched_tracks=false",
            "--set", "refine.mcr=false", "--set", "refine.merge_split_tracks=false"]


def first_frame_prompts(gt_path: Path, out: Path) -> Path:
    gt = ytvis.load(gt_path)
    maps = list(ytvis.video_idmaps(gt))
    v = gt["videos"][0]
    prompt = [maps[0]] + [np.zeros_like(maps[0]) for _ in maps[1:]]
    tracks = ytvis.video_tracks(gt)
    present = set(np.unique(maps[0]).tolist()) - {0}
    doc = ytvis.build_video(ytvis.VideoInfo(v["video_uid"], v["width"], v["height"], v["length"], v["fps"]), prompt,
                            {k: t for k, t in tracks.items() if k in present})
    out.write_text(json.dumps(doc))
    return out


def evaluate(pred: Path, gt: Path) -> dict:
    _, proc = run([PY, "-m", "tasks", "evaluate", "--pred", str(pred), "--gt", str(gt), "--out",
                   str(pred.with_name("evaluation.json"))])
    return json.loads(pred.with_name("evaluation.json").read_text())


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--width", type=int, default=1024)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in range(a.seeds):
            clip = tmp / f"s{seed}"
            run([PY, "-m", "tasks", "synth", "--out", str(clip), "--seed", str(seed), "--width", str(a.width),
                 "--no-progress"])
            for mode in MODES:
                out = tmp / f"o{seed}{mode}"
                cmd = [PY, "-m", "tasks", "label", str(clip / "clip.mp4"), "--out", str(out), "--no-progress"]
                if mode == "prompts":
                    cmd += ["--prompts", str(first_frame_prompts(clip / "gt.json", tmp / f"p{seed}.json"))]
                if mode == "baseline":
                    cmd += BASELINE
                run(cmd)
                ev = evaluate(out / "annotations.json", clip / "gt.json")
                rows.append({"seed": seed, "mode": mode, "JF_planar": ev["J&F"]["planar"], "JF_sphere": ev["J&F"]["sphere"],
                             "JF_things_sphere": ev["things"]["J&F"]["sphere"], "id_switches": ev["id_switches"],
                             "seam_objects": ev["seam_objects"], "seam_splits": ev["seam_split_objects"],
                             "pred_tracks": len(ev["objects"]) + len(ev["unmatched_pred_tracks"])})
    summary = {}
    for mode in MODES:
        sel = [r for r in rows if r["mode"] == mode]
        summary[mode] = {k: round(float(np.mean([r[k] for r in sel])), 4)
                         for k in ("JF_planar", "JF_sphere", "JF_things_sphere")}
        summary[mode].update(id_switches=sum(r["id_switches"] for r in sel), seam_splits=sum(r["seam_splits"] for r in sel),
                             seam_objects=sum(r["seam_objects"] for r in sel))
    return emit("quality", rows, summary)


if __name__ == "__main__":
    main()
