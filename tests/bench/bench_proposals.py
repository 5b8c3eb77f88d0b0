"""Proposal recall and precision by where objects are: near a pole, across the seam, elsewhere —
the method's plain tiling vs with the polar views; and the verifier's calls per frame and cache
hit rate.

Frames: ``tasks synth`` clips (1024x512, seeds 0..N-1), at the frame where the pole object peaks
(71-76 deg), where the seam object sits on the seam, at the first and last frames, and the
pole-peak frame rotated so that the pole object sits at 85 deg (what the tiles stretch most).
A ground-truth object counts as found when one proposed object covers it with a spherical IoU of
at least 0.5 (also reported at 0.9, and the mean best IoU; one-to-one, Hungarian); precision is
the share of proposed thing objects that found one.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import emit
from scipy.optimize import linear_sum_assignment

from tasks.backends import build_backends
from tasks.config import PipelineConfig
from tasks.geometry.components import spherical_centroid
from tasks.geometry.erp import row_solid_angles
from tasks.geometry.rotation import rotate_erp, rotation_matrix, rotation_to
from tasks.labeling.overlap import pair_stats
from tasks.labeling.sdr import annotate_frame
from tasks.synth import build_scene, render_frames


def frames_of(seed: int, width: int):
    sc = build_scene(seed=seed, width=width)
    want = {0: "first", sc.events["pole_peak"]: "pole_peak", sc.events["seam_cross"]: "seam_cross",
            len(sc.times) - 1 if hasattr(sc, "times") else None: "last"}
    frames = list(render_frames(sc))
    want[len(frames) - 1] = "last"
    out = [(name, frames[i][0], frames[i][1]) for i, name in want.items() if i is not None and i < len(frames)]
    rgb, gt = frames[sc.events["pole_peak"]]
    pole = sc.roles["pole"][0]
    lon, lat = spherical_centroid(gt == pole)
    R = np.linalg.inv(rotation_matrix(0.0, np.radians(85.0))) @ rotation_to(lon, lat)
    out.append(("pole_85deg", rotate_erp(rgb, R, interpolation="linear"), rotate_erp(gt, R, interpolation="nearest")))
    return out


def where(mask: np.ndarray) -> str:
    c = spherical_centroid(mask)
    if c is not None and abs(np.degrees(c[1])) >= 60:
        return "pole"
    if mask[:, 0].any() and mask[:, -1].any():
        return "seam"
    return "elsewhere"


def score(gt: np.ndarray, pred: np.ndarray, things: set[int]):
    h, w = gt.shape
    st = pair_stats(gt.astype(np.int64), pred.astype(np.int64), weights=row_solid_angles(h, w))
    g_ids = sorted(things)
    p_ids = sorted(set(np.unique(pred).tolist()) - {0})
    iou = np.zeros((len(g_ids), len(p_ids)))
    gi, pi = {g: i for i, g in enumerate(g_ids)}, {p: j for j, p in enumerate(p_ids)}
    for a, b, v in zip(st.a.tolist(), st.b.tolist(), st.iou.tolist()):
        if a in gi and b in pi:
            iou[gi[a], pi[b]] = v
    found, best = {}, {}
    if iou.size:
        r, c = linear_sum_assignment(-iou)
        for i, j in zip(r, c):
            best[g_ids[i]] = float(iou[i, j])
            if iou[i, j] >= 0.5:
                found[g_ids[i]] = p_ids[j]
    return found, p_ids, best


VARIANTS = {  # row name -> configuration overrides
    "tiles (method)": {"propose.layout": "tiles", "propose.polar_views": False},
    "tiles + polar views": {"propose.layout": "tiles", "propose.polar_views": True},
    "sphere (default)": {"propose.layout": "sphere"},
}


def stability(width: int = 1024) -> dict:
    """Do a frame's proposals survive what a re-shot copy of it goes through? (issue 10)

    Congo frame 0 and the five real panoramas, each H.264-encoded at crf 16 and at crf 18
    ("noise"), the crf-16 copy rolled by one pixel ("shift", rolled back before scoring), and
    the frame rolled by one pixel then encoded at crf 18 ("both": what the rolled benchmark
    video's frame 0 is). Score: area-weighted spherical IoU of the entity maps after Hungarian
    matching (:func:`tasks.metrics.consistency.agreement`), against the crf-16 copy's."""
    import tempfile
    from pathlib import Path

    from bench_real import video_frames
    from common import decoded_rgb
    from real_scenes import SOURCES, load_source

    from tasks.labeling.proposals import propose_frame
    from tasks.metrics.consistency import agreement
    from tasks.video.frames import Mp4Writer

    cfg = PipelineConfig()
    be = build_backends(cfg)
    frames = {"congo frame 0": video_frames(0.2, 10, width)[0], **{k: load_source(k, width) for k in SOURCES}}

    def encoded(f: np.ndarray, crf: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as d:
            with Mp4Writer(Path(d) / "f.mp4", f.shape[1], f.shape[0], 10, crf=crf) as w:
                w.write(f)
            return decoded_rgb(Path(d) / "f.mp4")[0]

    def entity(f: np.ndarray) -> np.ndarray:
        return propose_frame(f, cfg, be).entity

    rows = []
    for name, f in frames.items():
        a16 = encoded(f, 16)
        ref = entity(a16)
        copies = {"noise": entity(encoded(f, 18)),
                  "shift": np.roll(entity(np.roll(a16, 1, axis=1)), -1, axis=1),
                  "both": np.roll(entity(encoded(np.roll(f, 1, axis=1), 18)), -1, axis=1)}
        row = {"frame": name, "entities": int(len(np.unique(ref)) - (ref == 0).any())}
        row.update({k: round(agreement([ref], [m])["iou_weighted"], 4) for k, m in copies.items()})
        rows.append(row)
    summary = {k: {"mean": round(float(np.mean([r[k] for r in rows])), 4), "min": min(r[k] for r in rows)}
               for k in ("noise", "shift", "both")}
    return emit("proposal_stability", rows, summary)


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--stability", action="store_true",
                    help="instead: agreement of real frames' proposals with re-encoded and 1-px-rolled copies")
    a = ap.parse_args()
    if a.stability:
        return stability(a.width)
    tallies = {pv: {"pole": [0, 0, 0, []], "seam": [0, 0, 0, []], "elsewhere": [0, 0, 0, []], "pred_things": 0,
                    "pred_found": 0, "verifier_requests": 0, "frames": 0} for pv in a.variants}
    verifier_stats = {}
    for seed in range(a.seeds):
        for _name, rgb, gt in frames_of(seed, a.width):
            things = set(np.unique(gt).tolist()) - {0, 1, 2}
            for pv in a.variants:
                cfg = PipelineConfig().with_overrides(VARIANTS[pv])
                be = build_backends(cfg)
                objs = annotate_frame(rgb, cfg, be)
                found, p_ids, best = score(gt, objs.idmap, things)
                t = tallies[pv]
                for g in things:
                    k = where(gt == g)
                    t[k][1] += 1
                    t[k][0] += int(g in found)
                    t[k][2] += int(best.get(g, 0.0) >= 0.9)
                    t[k][3].append(best.get(g, 0.0))
                pred_things = [p for p in p_ids if objs.objects.get(p, {}).get("isthing")]
                t["pred_things"] += len(pred_things)
                t["pred_found"] += sum(1 for p in found.values() if p in pred_things)
                t["verifier_requests"] += objs.stats.get("verifier_calls", 0)
                t["frames"] += 1
                verifier_stats[pv] = be.verifier.stats.to_json()
    rows = []
    for pv, t in tallies.items():
        row = {"proposals": pv}
        for k in ("pole", "seam", "elsewhere"):
            row[f"recall_{k}@0.5"] = f"{t[k][0]}/{t[k][1]}"
            row[f"recall_{k}@0.9"] = f"{t[k][2]}/{t[k][1]}"
            row[f"mean_iou_{k}"] = round(float(np.mean(t[k][3])), 4) if t[k][3] else None
        row["precision_things"] = f"{t['pred_found']}/{t['pred_things']} = {t['pred_found'] / max(t['pred_things'], 1):.3f}"
        row["verifier_requests_per_frame"] = round(t["verifier_requests"] / max(t["frames"], 1), 2)
        row["verifier_cache_hit_rate"] = verifier_stats[pv]["cache_hit_rate"]
        rows.append(row)
    summary = {r["proposals"]: {k: v for k, v in r.items() if k != "proposals"} for r in rows}
    return emit("proposals", rows, summary)


if __name__ == "__main__":
    main()
