"""Camera rotation between ERP frames (:mod:`tasks.geometry.camera_motion`, issue #10 §2): angular
error and time per frame pair on the real panoramas of ``../shared/data``, over random rotations.

Each real panorama (pannellum, andes top eye, the three 360VOT frames) is resized to 1024 x 512
and rotated by random known rotations with :func:`tasks.geometry.rotation.rotate_erp`; the
estimator sees the original and the rotated frame (it works at its default 512 columns):

* ``handheld``: yaw, pitch, roll each uniform in +-5 deg (frame-to-frame motion of a hand, a
  helmet, a car);
* ``large``: each uniform in +-30 deg (fast turns, frames far apart);
* ``noisy``: as ``handheld`` plus Gaussian noise (sigma 8 grey levels) and JPEG quality 40 on
  the rotated frame and 70 on the original;
* ``moving_object``: as ``handheld`` with a 180 x 300 px patch of another real panorama (an
  eighth of the sphere) pasted in both frames at places 150-400 px apart (an object moving on
  its own);
* ``no_lk`` (ablation): ``handheld`` without the LK sub-pixel refit (ORB + RANSAC + Kabsch only).

``err_*`` is the angle of ``R_est.T @ R_true`` in degrees; ``ignored_deg`` is the error of
assuming a still camera (the angle of the true rotation: what the propagators did before
#10). ``pair_ms`` is one call on two frames (features of both computed); ``stream_ms`` is the
per-frame cost in a video, where each frame's features are computed once
(``frame_features`` + ``estimate_rotation`` on cached features); ``stream_cpu_ms`` is the same in
process CPU time (all threads), less sensitive to other load on the machine. Bad input: every ordered pair of
different panoramas (a cut) and grey/black frames; ``right_reason`` is the share refused with the
expected reason.

    .venv/bin/python tests/bench/bench_camera_motion.py [--per-image N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from common import REPO, emit, machine

from tasks.geometry.camera_motion import (
    angle_between_deg,
    estimate_rotation,
    frame_features,
    rotation_angle_deg,
)
from tasks.geometry.rotation import rotate_erp, rotation_matrix

WIDTH = 1024


def shared_data() -> Path:
    return Path(os.environ.get("LEADER360V_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_panos() -> dict[str, np.ndarray]:
    root = shared_data()
    items = [("pannellum", root / "erp_images" / "pannellum_examplepano_4096x2048.jpg", False),
             ("andes_top", root / "erp_images" / "gvr_andes_stereo_topbottom_2048x2048.jpg", True)]
    items += [(f"360vot_{p.stem}", p, False) for p in sorted((root / "360vot_samples").glob("*.jpg"))]
    out = {}
    for name, path, top in items:
        im = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if im is None:
            raise SystemExit(f"cannot read {path}: set LEADER360V_SHARED_DATA to the shared data folder")
        if top:
            im = im[: im.shape[0] // 2]
        out[name] = np.ascontiguousarray(cv2.resize(im, (WIDTH, WIDTH // 2), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    return out


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_UNCHANGED)


def make_case(kind: str, img: np.ndarray, other: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mag = 30.0 if kind == "large" else 5.0
    R = rotation_matrix(*np.radians(rng.uniform(-mag, mag, 3)))
    prev, cur = img, rotate_erp(img, R)
    if kind == "noisy":
        cur = _jpeg(np.clip(cur + rng.normal(0, 8, cur.shape), 0, 255).astype(np.uint8), 40)
        prev = _jpeg(img, 70)
    elif kind == "moving_object":
        h, w = 180, 300
        y0, x0 = rng.integers(60, 512 - h - 60), rng.integers(0, WIDTH - w)
        patch = other[y0:y0 + h, x0:x0 + w]
        py, px = rng.integers(80, 512 - h - 80), rng.integers(0, WIDTH - w - 400)
        dy, dx = rng.integers(-40, 40), rng.integers(150, 400)
        prev = img.copy()
        prev[py:py + h, px:px + w] = patch
        cur = cur.copy()
        cur[py + dy:py + dy + h, px + dx:px + dx + w] = patch
    return prev, cur, R


def timed(fn, *args, **kw):
    """Result, wall ms and process CPU ms (all threads; less sensitive to a loaded machine)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, (time.perf_counter() - t) * 1e3, (time.process_time() - c) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-image", type=int, default=8, help="random rotations per image and case")
    a = ap.parse_args()
    panos = load_panos()
    names = list(panos)
    rows, all_err = [], []
    for kind in ("handheld", "large", "noisy", "moving_object", "no_lk"):
        for i, name in enumerate(names):
            rng = np.random.default_rng(1000 * i + len(kind))
            errs, ignored, ratios, pair_ms, stream_ms, stream_cpu, fails = [], [], [], [], [], [], 0
            other = panos[names[(i + 2) % len(names)]]
            for _ in range(a.per_image):
                prev, cur, R = make_case("handheld" if kind == "no_lk" else kind, panos[name], other, rng)
                m, ms, _ = timed(estimate_rotation, prev, cur, refine=kind != "no_lk")
                pair_ms.append(ms)
                fp = frame_features(prev)
                fc, ms_f, cpu_f = timed(frame_features, cur)
                _, ms_e, cpu_e = timed(estimate_rotation, fp, fc, refine=kind != "no_lk")
                stream_ms.append(ms_f + ms_e)
                stream_cpu.append(cpu_f + cpu_e)
                ignored.append(rotation_angle_deg(R))
                if not m.ok:
                    fails += 1
                    continue
                errs.append(angle_between_deg(m.rotation, R))
                ratios.append(m.inlier_ratio)
            if kind != "no_lk":
                all_err += errs
            rows.append({
                "case": kind, "image": name, "pairs": a.per_image, "refused": fails,
                "err_mean_deg": round(statistics.fmean(errs), 4) if errs else None,
                "err_max_deg": round(max(errs), 4) if errs else None,
                "ignored_deg": round(statistics.fmean(ignored), 2),
                "inlier_ratio": round(statistics.fmean(ratios), 3) if ratios else None,
                "pair_ms": round(statistics.median(pair_ms), 1),
                "stream_ms": round(statistics.median(stream_ms), 1),
                "stream_cpu_ms": round(statistics.median(stream_cpu), 1),
                "right_reason": "",   # (bad-input rows)
            })
    # bad input
    cut_right, cut_refused, cut_total = 0, 0, 0
    for x, y in itertools.permutations(names, 2):
        m = estimate_rotation(panos[x], panos[y])
        cut_total += 1
        cut_refused += not m.ok
        cut_right += (not m.ok and m.reason == "cut" and rotation_angle_deg(m.rotation) == 0.0)
    rows.append({"case": "cut", "image": "all ordered pairs", "pairs": cut_total, "refused": cut_refused,
                 "right_reason": round(cut_right / cut_total, 3)})
    uni_right, uni_total = 0, 0
    for name in names:
        img = panos[name]
        for blank in (np.full_like(img, 128), np.zeros_like(img)):
            for pair in ((img, blank), (blank, img)):
                m = estimate_rotation(*pair)
                uni_total += 1
                uni_right += (not m.ok and m.reason == "uniform")
    rows.append({"case": "uniform", "image": "grey/black vs each", "pairs": uni_total,
                 "right_reason": round(uni_right / uni_total, 3)})
    main_rows = [r for r in rows if r["case"] in ("handheld", "large", "noisy", "moving_object")]
    summary = {
        "err_mean_deg": round(statistics.fmean(all_err), 4),
        "err_max_deg": round(max(all_err), 4),
        "err_median_deg": round(statistics.median(all_err), 4),
        "pairs_over_0_5deg": sum(e > 0.5 for e in all_err),
        "refused": sum(r["refused"] for r in main_rows),
        "pairs": sum(r["pairs"] for r in main_rows),
        "handheld_stream_ms_median": statistics.median(r["stream_ms"] for r in rows if r["case"] == "handheld"),
        "handheld_stream_cpu_ms_median": statistics.median(r["stream_cpu_ms"] for r in rows if r["case"] == "handheld"),
        "handheld_pair_ms_median": statistics.median(r["pair_ms"] for r in rows if r["case"] == "handheld"),
        "no_lk_err_mean_deg": round(statistics.fmean(r["err_mean_deg"] for r in rows if r["case"] == "no_lk"), 4),
        "cut_right_reason": rows[-2]["right_reason"], "uniform_right_reason": rows[-1]["right_reason"],
        "work_width": 512, "frames": f"{WIDTH}x{WIDTH // 2}", "cv2_threads": cv2.getNumThreads(),
        "machine": machine()["cpu"],
    }
    emit("camera_motion", rows, summary)


if __name__ == "__main__":
    main()
