"""Peak memory and speed of the propagators; SAM2's must not grow with the video.

    cd tests/bench && ../../.venv/bin/python bench_propagation_memory.py [--stock] [--gpu-only]

CPU cases, each in a fresh interpreter so that its peak RSS (``ru_maxrss``) is its own:

* **memory**: the SAM2 propagator (Hiera-tiny, *random* weights, image size 256, CPU) and the
  flow propagator on 60 and on 600 frames; the ratio of the peak RSS 600/60 is the number that
  matters (target <= 1.2). ``--stock`` adds the stock ``SAM2VideoPredictor`` on the same frames
  for contrast (it loads every frame and keeps every output). Frames: a deterministic synthetic
  clip (``tasks.synth``, seed 0, 60 frames, the 3 largest regions of frame 0 prompted) played in a loop,
  so both lengths hold the same 60 frames and differ only in how long the propagator runs.
* **speed**: seconds per frame at 1024x512 (SAM2 at image size 1024, and 512 for reference; the
  flow propagator at its default flow width).

GPU case (only where CUDA is available, skipped with a message otherwise): frames per second and
peak GPU memory of SAM2 tiny / base_plus / large at image size 1024 on a 2048x1024 clip with 1,
5 and 20 objects (``--checkpoint-dir`` with the released ``sam2.1_hiera_*.pt`` files for real
weights; random weights otherwise, which gives the same amount of computation per frame except
that objects predicted absent skip the upsampling).

Random weights make the masks meaningless; memory and time do not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, emit

PY = sys.executable
HERE = Path(__file__).resolve()
LOOP_FRAMES = 60


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _clip(width: int, frames: int = LOOP_FRAMES, objects: int = 5, seed: int = 0):
    from tasks.synth import build_scene, render_frames

    sc = build_scene(seconds=max(frames, 10) / 10.0, fps=10.0, width=width, seed=seed, objects=objects)
    return [(rgb, ids) for rgb, ids in render_frames(sc)][:frames]


def _propagator(backend: str, image_size: int, width: int, device: str = "cpu", model: str = "tiny",
                checkpoint: str | None = None, sha256: str | None = None):
    if backend == "flow":
        from tasks.backends.flow import FlowPropagator

        return FlowPropagator()
    from tasks.backends.sam2_propagator import Sam2Propagator

    return Sam2Propagator(model, image_size=image_size, device=device, checkpoint=checkpoint,
                          checkpoint_sha256=sha256, allow_random_weights=checkpoint is None)


# -- child: one case in a fresh interpreter -------------------------------------------------------
def case_memory(backend: str, n: int, width: int, image_size: int, objects: int) -> dict:
    clip = _clip(width)
    frames = [rgb for rgb, _ in clip]
    prompt = _prompt_with(clip[0][1], objects)
    t0 = time.perf_counter()
    if backend == "stock":
        return _stock_memory(frames, prompt, n, image_size)
    p = _propagator(backend, image_size, width)
    p.reset(frames[0], prompt)
    warm = None
    for i in range(1, n):
        p.step(frames[i % len(frames)])
        if i == 10:
            warm = _rss_mb()
    row = {"peak_rss_mb": round(_peak_rss_mb(), 1), "rss_after_10_frames_mb": round(warm or _rss_mb(), 1),
           "rss_end_mb": round(_rss_mb(), 1), "s_per_frame": round((time.perf_counter() - t0) / n, 4)}
    if backend == "sam2":
        st = p.stats()
        row.update(state_bytes=st["bytes"], max_entries_per_object=st["max_entries"], objects=st["objects"])
    return row


def _stock_memory(frames, prompt: np.ndarray, n: int, image_size: int) -> dict:
    """The stock predictor as the method runs it: a JPEG folder, init_state, add_new_mask per
    object, propagate_in_video over the whole video."""
    import warnings

    import cv2
    import torch

    from tasks.backends.sam2_propagator import load_model

    warnings.filterwarnings("ignore", message="cannot import name '_C'")
    model = load_model("tiny", image_size=image_size, device=torch.device("cpu"), allow_random_weights=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            cv2.imwrite(f"{tmp}/{i:05d}.jpg", cv2.cvtColor(frames[i % len(frames)], cv2.COLOR_RGB2BGR))
        with torch.inference_mode():
            state = model.init_state(video_path=tmp)
            for k in np.unique(prompt):
                if k:
                    model.add_new_mask(state, 0, int(k), prompt == k)
            warm = None
            for fi, _, _ in model.propagate_in_video(state):
                if fi == 10:
                    warm = _rss_mb()
    return {"peak_rss_mb": round(_peak_rss_mb(), 1), "rss_after_10_frames_mb": round(warm or _rss_mb(), 1),
            "rss_end_mb": round(_rss_mb(), 1), "s_per_frame": round((time.perf_counter() - t0) / n, 4)}


def case_speed(backend: str, n: int, width: int, image_size: int, objects: int) -> dict:
    clip = _clip(width, frames=n + 1)
    p = _propagator(backend, image_size, width)
    t = time.perf_counter()
    p.reset(clip[0][0], _prompt_with(clip[0][1], objects))
    reset_s = time.perf_counter() - t
    t = time.perf_counter()
    for rgb, _ in clip[1:]:
        p.step(rgb)
    per = (time.perf_counter() - t) / (len(clip) - 1)
    return {"s_per_frame": round(per, 3), "reset_s": round(reset_s, 2), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def child(a) -> None:
    if a.case == "memory":
        row = case_memory(a.backend, a.frames, a.width, a.image_size, a.objects)
    else:
        row = case_speed(a.backend, a.frames, a.width, a.image_size, a.objects)
    import torch

    row["torch_threads"] = torch.get_num_threads()
    print(json.dumps(row))


def spawn(case: str, backend: str, frames: int, width: int, image_size: int, objects: int) -> dict:
    cmd = [PY, str(HERE), "--case", case, "--backend", backend, "--frames", str(frames), "--width", str(width),
           "--image-size", str(image_size), "--objects", str(objects)]
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- GPU --------------------------------------------------------------------------------------------
def _prompt_with(ids: np.ndarray, k: int) -> np.ndarray:
    """``k`` objects: the largest ground-truth ones, then discs on a grid where there are fewer."""
    h, w = ids.shape
    present = [int(x) for x in np.argsort(np.bincount(ids.ravel()))[::-1] if x and (ids == x).any()]
    out = np.zeros_like(ids, dtype=np.uint16)
    for j, x in enumerate(present[:k]):
        out[ids == x] = j + 1
    yy, xx = np.mgrid[0:h, 0:w]
    r = h // 20
    for j in range(len(present[:k]), k):
        cy, cx = h // 4 + (j // 10) * h // 2, (j % 10) * w // 10 + w // 20
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = j + 1
    return out


def gpu_benchmark(models=("tiny", "base_plus", "large"), objects=(1, 5, 20), frames: int = 60, warmup: int = 5,
                  image_size: int = 1024, width: int = 2048, checkpoint_dir: str | None = None) -> list[dict] | None:
    """FPS and peak GPU memory of the SAM2 propagator on a 2048x1024 clip; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        print("GPU benchmark skipped: torch sees no CUDA device "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda})", file=sys.stderr)
        return None
    from tasks.backends.sam2_propagator import CHECKPOINT_NAMES, sha256_of

    clip = _clip(width, frames=30, objects=8)
    rows = []
    for model in models:
        ckpt = sha = None
        if checkpoint_dir:
            ckpt = str(Path(checkpoint_dir) / CHECKPOINT_NAMES[model])
            sha = sha256_of(ckpt)   # the benchmark trusts its own directory
        for k in objects:
            prompt = _prompt_with(clip[0][1], k)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            p = _propagator("sam2", image_size, width, device="cuda", model=model, checkpoint=ckpt, sha256=sha)
            p.reset(clip[0][0], prompt)
            stream = (clip[1 + i % (len(clip) - 1)][0] for i in range(warmup + frames))
            it = p.step_many(stream)
            for _ in range(warmup):
                next(it)
            torch.cuda.synchronize()
            t = time.perf_counter()
            n = sum(1 for _ in it)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t
            rows.append({"model": model, "objects": k, "image_size": image_size, "frame": f"{width}x{width // 2}",
                         "fps": round(n / dt, 2), "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                         "chunk_frames": p.chunk_frames, "weights": "checkpoint" if ckpt else "random",
                         "gpu": torch.cuda.get_device_name()})
            print(rows[-1], file=sys.stderr)
            del p, it
    return rows


# -- parent ----------------------------------------------------------------------------------------
def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["memory", "speed"], help=argparse.SUPPRESS)
    ap.add_argument("--backend", choices=["sam2", "flow", "stock"], help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, default=60, help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--image-size", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--lengths", default="60,600", help="video lengths of the memory cases")
    ap.add_argument("--sam2-width", type=int, default=256, help="frame width of the SAM2 memory cases")
    ap.add_argument("--flow-width", type=int, default=512, help="frame width of the flow memory cases")
    ap.add_argument("--speed-frames", type=int, default=4, help="frames timed per speed case")
    ap.add_argument("--objects", type=int, default=3, help="objects prompted in the CPU cases")
    ap.add_argument("--stock", action="store_true", help="also the stock SAM2VideoPredictor (memory)")
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--checkpoint-dir", help="released SAM 2.1 checkpoints for the GPU case")
    a = ap.parse_args()
    if a.case:
        child(a)
        return {}
    lengths = [int(x) for x in a.lengths.split(",")]
    rows: list[dict] = []
    summary: dict = {}
    if not a.gpu_only:
        backends = [("sam2", a.sam2_width, 256), ("flow", a.flow_width, 0)]
        if a.stock:
            backends.append(("stock", a.sam2_width, 256))
        for backend, width, size in backends:
            peaks = {}
            for n in lengths:
                r = spawn("memory", backend, n, width, size, a.objects)
                rows.append({"case": "memory", "backend": backend, "frame": f"{width}x{width // 2}",
                             "image_size": size or "-", "objects": a.objects, "frames": n, **r})
                peaks[n] = r["peak_rss_mb"]
                print(rows[-1], file=sys.stderr)
            summary[f"{backend}_peak_rss_ratio_{lengths[-1]}_vs_{lengths[0]}"] = round(peaks[lengths[-1]] / peaks[lengths[0]], 3)
        for backend, size in (("sam2", 1024), ("sam2", 512), ("flow", 0)):
            n = a.speed_frames if backend == "sam2" else max(20, a.speed_frames)
            r = spawn("speed", backend, n, 1024, size, a.objects)
            rows.append({"case": "speed", "backend": backend, "frame": "1024x512", "image_size": size or "-",
                         "objects": a.objects, "frames": n, **r})
            summary[f"{backend}{f'_{size}' if size else ''}_s_per_frame_1024x512"] = r["s_per_frame"]
            print(rows[-1], file=sys.stderr)
        summary["sam2_memory_bounded"] = summary[f"sam2_peak_rss_ratio_{lengths[-1]}_vs_{lengths[0]}"] <= 1.2
    gpu = gpu_benchmark(checkpoint_dir=a.checkpoint_dir)
    if gpu is None:
        summary["gpu"] = "skipped: no CUDA device"
    else:
        rows += [{"case": "gpu", **r} for r in gpu]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    table = [{k: r.get(k, "") for k in keys} for r in rows]
    summary["note"] = ("SAM2 with random weights (Hiera-tiny unless stated); CPU cases each in a fresh process; "
                       "torch threads = the machine's cores")
    doc = emit("propagation_memory", table, summary)
    return doc


if __name__ == "__main__":
    main()
