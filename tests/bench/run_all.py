"""Run every benchmark and write docs/BENCHMARKS.md and docs/benchmarks.json from that run.

    make bench            # or: .venv/bin/python tests/bench/run_all.py [--only NAME ...]

Each benchmark runs in its own interpreter; its last output line is JSON. The Markdown is
generated, so every number in it comes from the run that wrote it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
from pathlib import Path

from common import REPO, machine

BENCHES = {
    "label_speed": ("bench_label.py", "Seconds per frame of `python -m tasks label` (CPU)"),
    "quality": ("bench_quality.py", "Labeling quality on synthetic clips (CPU pipeline)"),
    "real": ("bench_real.py", "Real footage: re-shot real panoramas and a real video through a moving camera"),
    "real_speed": ("bench_real.py", "Speed on real content: `tasks label` on a 60-frame re-shot real clip (issue 10 §3)"),
    "dag_parse": ("bench_dag_parse.py", "DAG file parse time"),
    "airflow": ("bench_airflow.py", "Airflow as deployed: start-up, and time to a visible mistake"),
    "proposals": ("bench_proposals.py", "Proposals near the poles, across the seam and elsewhere"),
    "geometry": ("bench_geometry.py", "Geometry speed vs py360convert"),
    "camera_motion": ("bench_camera_motion.py", "Camera rotation between real 360° frames: error and time"),
    "propagation_memory": ("bench_propagation_memory.py", "Propagators: peak memory on long videos, speed"),
    "propagation_gpu": ("bench_propagation_memory.py", "SAM2 propagator on a GPU"),
    "reliability": ("bench_reliability.py", "Reliability: bad inputs, leaked secrets, concurrent writers (issue 12)"),
    "backends_cpu": ("bench_backends_cpu.py", "Proposer backends on the CPU at their tiny configuration (issue 13)"),
    "model_store": ("bench_model_store.py", "Model store round trip (import, verify, load) of a 200 MB model folder"),
    "gpu_backends": ("bench_gpu.py", "Production backends on a GPU (SAM2 entities, OneFormer voters, SAM2 propagation)"),
    "revision": ("bench_revision.py", "Manual revision: frames a reviewer corrects to reach J&F >= 0.95, vs from scratch"),
    "dashboard": ("bench_dashboard.py", "Ops dashboard: overview latency with 10,000 videos in the store (issue 14)"),
}
# extra arguments per benchmark
# real: 30 frames per re-shot clip and no `propagate.backend=warp` pipeline run (the independent warp
# baseline stays), so the whole benchmark fits in about 20 minutes on 2 cores
ARGS = {"propagation_memory": ["--stock"], "propagation_gpu": ["--gpu-only"], "backends_cpu": ["--repeats", "3"],
        "real": ["--frames", "30", "--backends", "default"],
        "real_speed": ["--scenes", "pannellum", "--paths", "handheld", "--frames", "60", "--modes", "auto", "--no-video"]}
# Benchmarks that need hardware this machine may lack: a run that produced no rows keeps the
# recorded run (made where the hardware was, with that machine in its record).
NEEDS_HARDWARE = {"propagation_gpu", "gpu_backends"}

NOTES = {
    "dashboard": (
        "Issue 14. A generated local store of 10,000 videos (source.json and the nine stage manifests shaped like the "
        "runner writes them; 3% quarantined, 2% half-written up to propagate, 3% manifests of an older pipeline "
        "without stats, 3 releases). GET / of the dashboard's FastAPI app (TestClient, auth dependency off), page and "
        "SVG plots included, no Airflow database (NoAirflow). *first scan*: no cache at all (every manifest stat'ed, "
        "the qa manifests and the newest 200 of each stage read); *cold*: a new app (a restarted api-server worker) "
        "reading the summary the scan left in the cache folder; *warm*: the same app; *background rescan*: the "
        "refresh a page starts once its data is 30 s old (after the page is sent), nothing changed. The first scan "
        "also reads each video's source.json (its raw key) and a flagged run's config.json (the human gate's limit), "
        "once. *videos of a run* / *task instance -> video page*: the pages Airflow links to, mapping 20 upload keys "
        "of the oldest videos plus one never-ingested upload to videos, from the scan (before: one source.json read "
        "per video until every key was found, 10,000 for the never-ingested one). Target: cold and warm < 1 s."),
    "revision": (
        "Issue 15 §5. Synthetic clips (512x256, 3 s at 10 fps, handheld camera, seeds 1 and 2) whose true labels get "
        "one injected error each (an ID switch from the middle frame on, a missed object, an object split at the "
        "left/right border, a wrong class) or all four; a simulated reviewer corrects the worst frame (replaced by "
        "the true labels), the corrections are re-followed forward and backward (`tasks/review/refollow.py`, CPU "
        "flow propagator), until J&F >= 0.95 (`frames_to_jf95`) and no ID switch or seam split is left "
        "(`frames_to_clean`). `from_scratch` starts from no labels with the same propagation; `by_hand` is every "
        "frame drawn. A wrong class costs a class edit and no frame (J&F does not see classes)."),
    "model_store": (
        "Issue 13 §3. A folder as `save_pretrained` writes it (config.json + one 200 MB model.safetensors of random "
        "float32) imported into a local store (hash + copy, manifest last), verified (every byte read back and "
        "hashed), then loaded as a voter does: `model_path` into an empty cache (copy + hash against the manifest) "
        "and the weights read into memory; *warm* = a second load, the cache re-used after a size/mtime check. "
        "Median of 3 rounds, each into a fresh store and cache; files fresh in the page cache, so these are copy "
        "and sha256 speeds (a floor for MinIO, which adds the network)."),
    "gpu_backends": (
        "Issue 13 §6. `configs/production.yaml` at production size with *random* weights, models imported into a "
        "model store and loaded through it: SAM2.1 Hiera-L automatic masks (32x32 points) and the three OneFormer "
        "Swin-L voters (219M parameters each; tiles resized to 640 wide) on the three seam-aware 1024-column tiles "
        "of a real 2048x1024 ERP frame; the SAM2-L propagator at image size 1024 with 1/5/20 objects; autocast "
        "off/fp16/bf16; peak GPU memory per backend. **Not yet measured**: no GPU was lent to the session that "
        "wrote it (the script skips with the reason without CUDA; `--smoke --device cpu` runs the same code path "
        "at toy sizes). Until a run is recorded here, the GPU memory of `resources.yaml` rests on the SAM2 rows "
        "above and the models' sizes."),
    "real_speed": (
        "Issue 10 §3: the whole pipeline (`tasks label`, auto mode) on the pannellum panorama re-shot through the "
        "handheld path, 60 frames at 1024x512, run alone on the machine; target <= 0.5 s/frame on 2 cores. "
        "stage_s_per_frame is the per-stage profile."),
    "real": (
        "Issue 10 §1. *Re-shot panoramas*: the five real ERP images of `../shared/data` (pannellum, andes top eye, "
        "360VOT 0098/0115/0030) at 1024x512, turned once so an object sits on the seam (and, where a <= 25 deg tilt "
        "allows, one at |lat| > 50 deg), re-shot through `tasks.synth.camera` paths (pan, handheld, vehicle; 30 "
        "frames at 10 fps, H.264 crf 16); objects frozen in `tests/bench/real_objects.json` (GrabCut from boxes: "
        "the 360VOT boxes of 0098/0115, by eye elsewhere). Ground truth: the frame-0 masks rotated by the known "
        "camera rotation. *prompted*: `--prompts` with the frame-0 masks; J planar/sphere, F sphere over frames "
        "1..29, tracks = tracks holding > 10% of the object; *ours* = default configuration, *warp* = "
        "`--set propagate.backend=warp`, *baseline* = each mask warped on its own along wrap-aware DIS backward "
        "flow (no pipeline). *auto*: rotation consistency = labels of frame t vs the frame-0 labels rotated by the "
        "camera, tracks matched over the clip (Hungarian, spherical IoU), area-weighted; baseline = the same "
        "frame-0 labels carried by the independent warp. *Real video*: congo (top eye), 3 s at 10 fps, 1024x512, "
        "as-is vs re-shot through a handheld path (equivariance: labels(rotated) vs rotate(labels)) and rolled by "
        "W/2; prompted = the as-is auto run's frame-0 labels as prompts. The real-video *baseline* warps ONE "
        "frame-0 labelling (the as-is auto run's) along both videos, so it measures propagation alone; our auto rows "
        "also propose frame 0 afresh on each video (a proposer's equivariance), so the like-for-like comparison of "
        "the propagators is the *prompted* row (both start from the same frame-0 labels). Timings: s/frame of each `tasks label` "
        "run and per stage (several runs at once with `--jobs`, so per-run seconds are an upper bound)."),
    "airflow": (
        "tests/deployed/deployment.py: a fresh AIRFLOW_HOME laid out like the Airflow image, SQLite, LocalExecutor, "
        "loopback; *start*: launching `airflow standalone` (it creates its database) or the four components "
        "(after `airflow db migrate`), until `GET /api/v2/dags` lists both DAGs and until every heartbeat is "
        "healthy. *typo*: `leader360v_nightly` triggered through the REST API with `keys` on a 1 s 256x128 "
        "synthetic clip and `config_overrides={\"refine.tua\": 0.004}`; seconds from the trigger request to the "
        "first failed task and to the end of the run (issue 11: about 4 minutes, run green, before fail-fast)."),
    "label_speed": (
        "Synthetic clip (`tasks synth --seed 0 --seconds 3 --fps 10`), every stage from an empty store, "
        "wall time of the whole command divided by the frames; per-stage seconds from the stage manifests. "
        "Proposals run at 1024 px (`propose.work_width`) whatever the frame size; propagation, refine and the "
        "export scale with the pixels."),
    "quality": (
        "`tasks synth` defaults (4 s, 15 fps, 1024x512; an object crossing the seam, one passing a pole, one "
        "appearing mid-clip, an occlusion), seeds 0..3. *auto*: no prompts; *prompts*: `--prompts` with the "
        "ground-truth masks of frame 0 (a person's corrected first frame); *baseline*: the method as its code "
        "does it (`--set propagate.seam_aware=false --set refine.keep_unmatched_tracks=false --set refine.mcr=false "
        "--set refine.merge_split_tracks=false`: no seam handling during propagation, tracks the re-SDR misses "
        "are dropped, plain re-SDR on coverage drops, pieces of one object keep their ids until the re-SDR). J&F per DAVIS (planar) and with "
        "solid-angle weights and seam-wrapped boundaries (sphere); ID switches CLEAR-MOT style; a seam split is "
        "a seam-crossing object that got more than one id."),
    "proposals": (
        "`tasks synth` frames (1024x512, seeds 0..5): the pole object at its peak (71-76 deg) and rotated to 85 deg, "
        "the seam object on the seam, first and last frames. Found = one proposed object with spherical IoU >= 0.5 "
        "(Hungarian); also at 0.9 and the mean best IoU. *tiles (method)*: `--set propose.layout=tiles "
        "--set propose.polar_views=false`; *tiles + polar views*: `--set propose.layout=tiles`; *sphere (default)*: "
        "one segmentation of the whole sphere, regions merged across the seam and the poles (issue 10). "
        "Verifier: the CPU embedding verifier (requests = masks the vote left open; cache = repeated label texts)."),
    "geometry": (
        "Same output as py360convert 1.0.4 (bilinear, same sizes; for the perspective view the FoV that puts its "
        "pixels on ours). *cold*: first call, remap table built; *warm*: cached table. py360convert also caches its "
        "tables and calls `cv2.remap`, so warm calls of both sit near one `cv2.remap` (the *remap floor* column); "
        "the gain is in building tables and in not copying/padding the frame per channel."),
    "propagation_memory": (
        "Peak RSS of a fresh process following 60 and 600 frames (3 objects): SAM2 streaming (Hiera-tiny, random "
        "weights — no checkpoint is obtainable here —, image size 256, CPU) vs the stock `SAM2VideoPredictor` "
        "(which preloads every frame and keeps every output), and the CPU flow propagator; seconds per frame at "
        "1024x512 on the CPU. The GPU rows (tiny/base+/large, 1/5/20 objects) run only where CUDA is available."),
    "camera_motion": (
        "Issue 10 §2. `tasks.geometry.camera_motion.estimate_rotation` (ORB corners spread over the sphere, "
        "2-point rotation RANSAC on unit vectors, Kabsch, LK sub-pixel refit; work width 512) on the five real "
        "panoramas at 1024x512, each rotated by random known rotations: *handheld* +-5 deg per axis, *large* "
        "+-30 deg, *noisy* handheld + noise sigma 8 + JPEG 40, *moving_object* handheld + a 180x300 patch of "
        "another panorama moving 150-400 px, *no_lk* = handheld without the LK refit (ablation). err = angle of "
        "R_est^T R_true; *ignored_deg* = the error of assuming a still camera (the previous behaviour). "
        "*stream_ms* = per frame in a video (each frame's features once), wall and process-CPU. Bad input: every "
        "ordered pair of different panoramas (a cut) and grey/black frames, refused with the right reason."),
    "reliability": (
        "Issue 12. Each row runs the real command line in a fresh process on a local store in a temporary folder "
        "($TMP), with tiny inputs made by ffmpeg (64x32) or `tasks synth` (2 s, 8 fps, 256x128); the credential "
        "rows send to a real HTTP listener on loopback with LEADER360V_S3_SECRET_KEY and LEADER360V_LLM_API_KEY "
        "set. *ok* = observed exit code and store contents as expected. Two-process rows: the second process "
        "starts one second after the first holds the stage's lease; every committed manifest's sha256 is "
        "compared with the stored files. Quarantine/release rows label one synth clip, publish v1, then try "
        "the settings mistakes of issue 12 point 1 on it; the two `release` processes start together on a copy of "
        "that store without releases."),
    "propagation_gpu": (
        "The GPU case of `bench_propagation_memory.py`: frames per second and peak GPU memory of the streamed SAM2 "
        "propagator at image size 1024 on a 2048x1024 synthetic clip with 1, 5 and 20 prompted objects, Hiera "
        "tiny / base+ / large with *random* weights (no checkpoint is obtainable here; the computation per frame is "
        "the same except that objects predicted absent skip the upsampling). Run on the device machine lent to the "
        "task (code of commit 0b49f7b, before the de-rotation of #10 landed). Per-object work is sequential, so "
        "frames per second fall with the number of objects; tiny ran first and its 1-object row includes warm-up "
        "effects (it reads slower than base+)."),
    "backends_cpu": (
        "Issue 13 regression guard, not a product number: seconds per tile of each proposer on the CPU (2 torch "
        "threads), on the 3 seam-aware tiles (512x512 at `propose.work_width` 1024) of two real panoramas "
        "(pannellum, 360VOT 0030). The production backends run *tiny random* models of their real classes "
        "(tests/support/tiny_models.py: SAM 2.1 Hiera-tiny at input 256 with an 8x8 point grid — each point's 3 masks are "
        "upsampled to the tile for the stability score, as SAM2 does: CPU time grows with the points —; Mask2Former/"
        "OneFormer with a 16-d Swin, their dataset's classes, tiles resized to 640 wide then 256 px by the model's "
        "processor), imported with `models import` and loaded through the store (*load_s*: manifest check + "
        "build); thresholds 0 so every mask takes the whole code path. Baseline: the CPU backends of the default "
        "configuration (superpixel entities per tile; the two prior voters per whole 1024x512 frame). Production "
        "sizes run on a GPU: `tests/bench/bench_gpu.py`."),
    "dag_parse": (
        "A fresh interpreter with `airflow.sdk` already imported runs the DAG file (what the dag-processor "
        "pays per parse); median and max of 5."),
}


def table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)\n"
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHES))
    a = ap.parse_args()
    here = Path(__file__).parent
    results_path = REPO / "docs" / "benchmarks.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in a.only or BENCHES:
        script, _ = BENCHES[name]
        print(f"== {name}", flush=True)
        proc = subprocess.run([sys.executable, str(here / script), *ARGS.get(name, [])], capture_output=True, text=True,
                              cwd=REPO)
        print(proc.stdout, proc.stderr[-2000:] if proc.returncode else "", flush=True)
        if proc.returncode:
            raise SystemExit(f"benchmark {name} failed")
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
        if name in NEEDS_HARDWARE and not doc["rows"] and name in results:
            print(f"{name}: no rows on this machine ({doc['summary']}); keeping the run of {results[name]['ran']} "
                  f"on {results[name]['machine'].get('gpu', results[name]['machine']['cpu'])}", flush=True)
            continue
        doc["ran"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        doc["machine"] = machine()
        doc["command"] = " ".join(["python", f"tests/bench/{script}", *ARGS.get(name, [])])
        results[name] = doc
    results_path.parent.mkdir(exist_ok=True)
    results_path.write_text(json.dumps(results, indent=1))
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`python tests/bench/run_all.py`); every number below comes from the run "
             "recorded with it. Re-run after changing the code they measure.", ""]
    for name, (_, title) in BENCHES.items():
        if name not in results:
            continue
        r = results[name]
        m = r["machine"]
        lines += [f"## {title}", "", NOTES.get(name, ""), "",
                  f"Command: `{r['command']}` — run {r['ran']} on {m['gpu'] + ' (' if 'gpu' in m else ''}{m['cpu']}, "
                  f"{m['cores']} cores, {m['memory_gib']} GiB{')' if 'gpu' in m else ''}, Python {m['python']}"
                  f"{', torch ' + m['torch'] if 'torch' in m else ''}.", "", table(r["rows"]), "Summary: `" + json.dumps(r["summary"]) + "`", ""]
    (REPO / "docs" / "BENCHMARKS.md").write_text("\n".join(lines))
    print(f"wrote {REPO / 'docs' / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
