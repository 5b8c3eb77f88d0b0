"""Every production backend at production size on a CUDA GPU (issue 13 §6).

    .venv/bin/python tests/bench/bench_gpu.py                    # on a CUDA machine
    .venv/bin/python tests/bench/bench_gpu.py --smoke --device cpu   # the same code path, toy sizes

What runs is what ``configs/production.yaml`` runs, through the same code a pod runs: each model is
built with *random* weights at its released size (no checkpoint can be had here; speed and memory do
not depend on the values), saved as a user's download would be, imported with ``models import`` into
a model store in a temporary folder, and loaded by the backends through :func:`tasks.models.model_path`:

* ``sam2.1-hiera-large`` -- SAM 2.1 Hiera-L (``sam2.1_hiera_l.yaml``, image size 1024), the
  released ``{"model": state_dict}`` layout;
* ``oneformer_ade20k`` / ``oneformer_coco`` / ``oneformer_cityscapes`` -- OneFormer with the Swin-L
  backbone of the ``shi-labs/oneformer_*_swin_large`` releases (embed dim 192, depths 2/2/18/2,
  window 12; 250 / 150 / 250 queries; test-time shortest edge 640 / 800 / 1024), their datasets'
  class names as ``id2label``, a CLIP-style tokenizer for the task prompt.

Rows (after ``--warmup`` untimed calls; peak = ``torch.cuda.max_memory_allocated`` since the
backend was built, weights included):

* ``store`` -- per model: parameters, size, ``models import`` seconds, first ``model_path`` seconds;
* ``entities`` -- the ``sam2_amg`` proposer on the three seam-aware 1024-column tiles of a real
  2048x1024 ERP frame (``../shared/data``): tiles/s, masks per tile;
* ``voter`` -- each OneFormer voter on the same tiles (resized to 640 wide, batches of
  ``propose.panoptic_batch_tiles``): tiles/s;
* ``propagation`` -- the SAM2 propagator at image size 1024 on a 2048x1024 synthetic clip with
  1 / 5 / 20 prompted objects: frames/s (fp16/bf16 rows wrap the loop in ``torch.autocast``, as
  SAM2's own examples run the video predictor);

each with ``--autocast`` off, fp16 and bf16 (``propose.autocast`` for the proposers). Without CUDA
it prints why and emits no rows (exit 0), so ``run_all.py`` keeps the last recorded GPU run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, emit

PRODUCTION = REPO / "configs" / "production.yaml"
SAM2_NAME = "sam2.1-hiera-large"
# Swin-L OneFormer of the releases (shi-labs/oneformer_{ade20k,coco,cityscapes}_swin_large):
# voter -> (label space in tasks/data/vocabulary.json, queries, test-time shortest edge, longest edge)
VOTERS = {
    "oneformer_ade20k": ("ade20k", 250, 640, 2560),
    "oneformer_coco": ("coco_panoptic", 150, 800, 1333),
    "oneformer_cityscapes": ("cityscapes", 250, 1024, 2048),
}


def _cuda_sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device):
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


# -- models at production size, saved as downloads -------------------------------------------------
def _class_names(space: str) -> list[str]:
    vocab = json.loads((REPO / "tasks" / "data" / "vocabulary.json").read_text())
    return list(vocab["maps"][space])


def _char_tokenizer():
    """A CLIP tokenizer over letters: OneFormer's task prompt ("the task is panoptic") becomes ids
    as it does with the real one (the CLIP BPE files cannot be had offline; the model reads the
    ids through an MLP, so their values do not change the computation)."""
    import string

    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def save_oneformer(folder: Path, voter: str, smoke: bool) -> Path:
    import torch
    import transformers
    from transformers import SwinConfig
    from transformers.models.oneformer.image_processing_pil_oneformer import OneFormerImageProcessorPil

    space, queries, short, long = VOTERS[voter]
    names = _class_names(space)
    id2label = dict(enumerate(names))
    if smoke:
        swin = SwinConfig(image_size=224, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
        extra = dict(hidden_dim=32, dim_feedforward=64, encoder_feedforward_dim=64, conv_dim=32, mask_dim=32,
                     decoder_layers=2, encoder_layers=1, num_attention_heads=2, text_encoder_width=32,
                     text_encoder_num_layers=1, query_dec_layers=1, text_encoder_n_ctx=4)
        queries, short, long = 12, 256, 1024
    else:
        swin = SwinConfig(image_size=384, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48],
                          window_size=12, drop_path_rate=0.3, out_features=["stage1", "stage2", "stage3", "stage4"])
        extra = {}
    cfg = transformers.OneFormerConfig(backbone_config=swin, num_queries=queries, id2label=id2label,
                                       label2id={n: i for i, n in id2label.items()}, **extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.OneFormerForUniversalSegmentation(cfg).eval()
        with torch.no_grad():   # random heads answer "no object" everywhere; let queries through
            model.model.transformer_module.decoder.class_embed.bias[-1] = -20.0
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    OneFormerImageProcessorPil(size={"shortest_edge": short, "longest_edge": long},
                               num_labels=len(names)).save_pretrained(folder)
    _char_tokenizer().save_pretrained(folder)
    return folder


def save_sam2(folder: Path, size: str, image_size: int) -> Path:
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from tasks.backends.sam2_propagator import CHECKPOINT_NAMES, MODEL_CONFIGS

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_sam2_video_predictor(MODEL_CONFIGS[size], ckpt_path=None, device="cpu",
                                           hydra_overrides_extra=[f"++model.image_size={image_size}"])
    folder.mkdir(parents=True)
    torch.save({"model": model.state_dict()}, folder / CHECKPOINT_NAMES[size])
    return folder


def _params_in(folder: Path) -> int:
    import torch

    total = 0
    for f in folder.iterdir():
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), "pt") as st:
                total += sum(int(np.prod(st.get_slice(k).get_shape())) for k in st.keys())
        elif f.suffix == ".pt":
            total += sum(v.numel() for v in torch.load(f, map_location="cpu", weights_only=True)["model"].values())
    return total


def build_store(tmp: Path, voters: list[str], sam2_size: str, image_size: int, smoke: bool):
    from tasks.models import import_model, model_path
    from tasks.storage import LocalStore

    store = LocalStore(tmp / "store")
    rows = []
    todo = [(SAM2_NAME, lambda f: save_sam2(f, sam2_size, image_size))] + \
           [(v, lambda f, v=v: save_oneformer(f, v, smoke)) for v in voters]
    for name, save in todo:
        t0 = time.perf_counter()
        folder = save(tmp / "downloads" / name)
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        m = import_model(store, folder, name, source="random weights (bench_gpu.py)", license="n/a")
        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        model_path(name, store=store, cache_dir=tmp / "cache")
        t_fetch = time.perf_counter() - t0
        rows.append({"case": "store", "backend": name, "params_M": round(_params_in(folder) / 1e6, 1),
                     "size_MB": round(m.total_size / 1e6, 1), "build_s": round(t_save, 2),
                     "import_s": round(t_import, 2), "first_model_path_s": round(t_fetch, 2)})
        print(rows[-1], file=sys.stderr, flush=True)
    return store, rows


# -- inputs -----------------------------------------------------------------------------------------
def erp_tiles(width: int) -> list[np.ndarray]:
    """The three seam-aware tiles of a real ERP frame (pannellum, ../shared/data) at ``width``."""
    import cv2

    from tasks.geometry.tiles import cut_tiles, tile_layout

    shared = REPO.parent / "shared" / "data" / "erp_images" / "pannellum_examplepano_4096x2048.jpg"
    im = cv2.imread(str(shared))
    if im is None:
        rng = np.random.default_rng(0)           # no shared data: a textured stand-in, same sizes
        im = cv2.GaussianBlur(rng.integers(0, 255, (width // 2, width, 3), dtype=np.uint8), (0, 0), 3)
    frame = np.ascontiguousarray(cv2.resize(im, (width, width // 2), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    return cut_tiles(frame, tile_layout(width // 2, width))


def synthetic_clip(width: int, frames: int):
    from tasks.synth import build_scene, render_frames

    sc = build_scene(seconds=max(frames, 10) / 10.0, fps=10.0, width=width, seed=0, objects=8)
    return [rgb for rgb, _ in render_frames(sc)][:frames]


def disc_prompt(h: int, w: int, k: int) -> np.ndarray:
    """``k`` disjoint discs (2 rows of up to 10) as prompt ids 1..k."""
    out = np.zeros((h, w), np.uint16)
    yy, xx = np.mgrid[:h, :w]
    r = max(2, min(h // 10, w // 25))
    for j in range(k):
        cy, cx = h // 4 + (j // 10) * h // 2, (j % 10) * w // 10 + w // 20
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = j + 1
    return out


# -- the runs ---------------------------------------------------------------------------------------
def _config(device: str, autocast: str, smoke: bool, image_size: int, sam2_size: str):
    from tasks.config import PipelineConfig

    over = {"propose.device": device, "propagate.sam2_device": device, "propose.autocast": autocast,
            "propagate.sam2_model": sam2_size, "propagate.sam2_image_size": image_size}
    if smoke:
        over["propose.amg_points_per_side"] = 4
    return PipelineConfig.from_file(PRODUCTION).with_overrides(over)


def run_entities(cfg, store, tiles, repeat: int, warmup: int, device) -> dict:
    from tasks.backends.sam2_entities import build_sam2_entities

    _reset_peak(device)
    seg = build_sam2_entities(cfg, store)
    for t in tiles[:warmup]:
        seg.segment(t)
    _cuda_sync(device)
    t0 = time.perf_counter()
    masks = [len(np.unique(seg.segment(t))) - 1 for _ in range(repeat) for t in tiles]
    _cuda_sync(device)
    dt = time.perf_counter() - t0
    return {"tiles_per_s": round(len(masks) / dt, 3), "masks_per_tile": round(float(np.mean(masks)), 1),
            "points_per_tile": cfg.propose.amg_points_per_side ** 2}


def run_voter(cfg, store, name: str, tiles, repeat: int, warmup: int, device) -> dict:
    from tasks.backends.panoptic_hf import HFPanopticVoter

    pc = cfg.propose
    _reset_peak(device)
    voter = HFPanopticVoter(name, store=store, device=pc.device, autocast_mode=pc.autocast,
                            input_width=pc.panoptic_input_width, score_thresh=pc.panoptic_score_thresh,
                            overlap_thresh=pc.panoptic_overlap_thresh, batch_tiles=pc.panoptic_batch_tiles)
    if warmup:
        voter.segment_many(tiles[:max(1, min(warmup, len(tiles)))])
    _cuda_sync(device)
    t0 = time.perf_counter()
    n = sum(len(voter.segment_many(tiles)) for _ in range(repeat))
    _cuda_sync(device)
    dt = time.perf_counter() - t0
    return {"tiles_per_s": round(n / dt, 3), "batch_tiles": voter.batch_tiles}


def run_propagation(cfg, store, clip, k: int, frames: int, warmup: int, autocast: str, device) -> dict:
    import contextlib

    import torch

    from tasks.backends.sam2_propagator import build_sam2_propagator

    h, w = clip[0].shape[:2]
    _reset_peak(device)
    p = build_sam2_propagator(cfg, w, store=store)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(autocast)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ctx:
        p.reset(clip[0], disc_prompt(h, w, k))
        it = p.step_many(clip[1 + i % (len(clip) - 1)] for i in range(warmup + frames))
        for _ in range(warmup):
            next(it)
        _cuda_sync(device)
        t0 = time.perf_counter()
        n = sum(1 for _ in it)
        _cuda_sync(device)
        dt = time.perf_counter() - t0
    return {"frames_per_s": round(n / dt, 3), "chunk_frames": p.chunk_frames, "oom_events": p.oom_events}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --smoke: checks the code path)")
    ap.add_argument("--smoke", action="store_true", help="toy model sizes (SAM2 tiny at 128, tiny OneFormer), "
                                                         "few calls: a check that the benchmark runs, not numbers")
    ap.add_argument("--autocast", default="off,fp16,bf16")
    ap.add_argument("--objects", default="1,5,20")
    ap.add_argument("--voters", default=",".join(VOTERS))
    ap.add_argument("--only", default="entities,voters,propagation")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the 3 tiles per proposer case")
    ap.add_argument("--frames", type=int, default=30, help="timed frames per propagation case")
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()

    import torch

    from tasks.models import enforce_offline

    enforce_offline()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        reason = (f"no CUDA device: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no GPU; run it "
                  "on a CUDA machine, or with --smoke --device cpu to check the code path")
        print(f"GPU benchmark skipped: {reason}", file=sys.stderr)
        emit("gpu_backends", [], {"skipped": reason})
        return
    device = torch.device(a.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke)"
    width, image_size, sam2_size = (512, 128, "tiny") if a.smoke else (2048, 1024, "large")
    modes = [m for m in a.autocast.split(",") if m]
    if device.type == "cpu":
        modes = ["off"]                  # autocast is CUDA-only in the backends (ignored on the CPU)
    voters = [v for v in a.voters.split(",") if v]
    only = set(a.only.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as d:
        tmp = Path(d)
        store, store_rows = build_store(tmp, voters if "voters" in only else [], sam2_size, image_size, a.smoke)
        rows += store_rows
        os.environ["LEADER360V_MODEL_CACHE"] = str(tmp / "cache")
        tiles = erp_tiles(width)
        clip = synthetic_clip(width, 12) if "propagation" in only else None

        def record(case: str, backend: str, mode: str, fn, **extra) -> None:
            row = {"case": case, "backend": backend, "autocast": mode, **extra}
            try:
                row.update(fn())
            except Exception as exc:  # noqa: BLE001 - a failing case is a row saying why, the rest still run
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            row.update(peak_gpu_gib=_peak_gib(device), gpu=gpu)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)

        for mode in modes:
            cfg = _config(a.device, mode, a.smoke, image_size, sam2_size)
            if "entities" in only:
                record("entities", "sam2_amg", mode, lambda cfg=cfg: run_entities(cfg, store, tiles, a.repeat, a.warmup, device),
                       tile=f"{tiles[0].shape[1]}x{tiles[0].shape[0]}")
            if "voters" in only:
                for v in voters:
                    record("voter", v, mode, lambda v=v, cfg=cfg: run_voter(cfg, store, v, tiles, a.repeat, a.warmup, device),
                           tile=f"{tiles[0].shape[1]}x{tiles[0].shape[0]}")
            if "propagation" in only:
                for k in (int(x) for x in a.objects.split(",")):
                    record("propagation", f"sam2_{sam2_size}", mode,
                           lambda k=k, cfg=cfg, mode=mode: run_propagation(cfg, store, clip, k, a.frames, a.warmup, mode,
                                                                                  device),
                           objects=k, frame=f"{width}x{width // 2}", image_size=image_size)
    failed = [r for r in rows if "error" in r]
    emit("gpu_backends", rows, {"gpu": gpu, "smoke": a.smoke, "weights": "random", "autocast": modes,
                                "failed_rows": len(failed)})


if __name__ == "__main__":
    main()
