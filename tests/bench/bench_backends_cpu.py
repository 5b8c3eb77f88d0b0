"""CPU seconds per tile of every proposer backend at its tiny configuration (issue 13 "Numbers").

A regression guard, not a product number: the production backends (SAM2 automatic masks, the six
Mask2Former/OneFormer voters) run with *tiny random* models (tests/support/tiny_models.py) saved,
imported into a model store and loaded through it exactly as a stage does, on the seam-aware tiles
of real ERP frames (../shared/data) at the proposal work width; the CPU backends of the default
configuration run beside them as the baseline. Each row: wall and process-CPU seconds per tile
(median over repeats of all tiles of every frame), and the load time through the store (verify +
build). Random weights: the SAM2 rows use thresholds 0 so every mask goes through upsampling,
stability, NMS and clean-up (the worst case of the real code path); the voters use score and
overlap thresholds 0 for the same reason.

    .venv/bin/python tests/bench/bench_backends_cpu.py [--repeats 3] [--work-width 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, emit

sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

FRAMES = ("erp_images/pannellum_examplepano_4096x2048.jpg", "360vot_samples/0030_000064.jpg")


def load_frames(shared: Path, width: int) -> list[np.ndarray]:
    out = []
    for rel in FRAMES:
        bgr = cv2.imread(str(shared / rel))
        if bgr is None:
            raise SystemExit(f"cannot read {shared / rel} (set LEADER360V_SHARED_DATA)")
        out.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, width // 2), interpolation=cv2.INTER_AREA))
    return out


def timed(fn, items, repeats: int) -> tuple[float, float]:
    """(median wall s per item, median process-CPU s per item) over ``repeats`` passes (one warm-up)."""
    fn(items[0])
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for it in items:
            fn(it)
        walls.append((time.perf_counter() - w0) / len(items))
        cpus.append((time.process_time() - c0) / len(items))
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work-width", type=int, default=1024, help="ERP width the tiles are cut from (propose.work_width)")
    ap.add_argument("--sam2-size", type=int, default=256, help="SAM2 input size (production: 1024)")
    ap.add_argument("--points-per-side", type=int, default=8, help="SAM2 point grid (production: 32)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="backend names to run (default: all)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import os

    from tasks.backends import build_backends
    from tasks.backends.panoptic_hf import VOTERS
    from tasks.backends.scene_prior import ClusterPriorVoter, ColorPriorVoter
    from tasks.backends.superpixel import SuperpixelEntitySegmentor
    from tasks.config import PipelineConfig
    from tasks.geometry.tiles import cut_tiles, tile_layout
    from tasks.models import import_model
    from tasks.storage import LocalStore
    from tasks.vocabulary import master
    # by path: label-studio-converter installs a top-level `tests` package that shadows this repo's
    # (pytest finds tests.support through its conftest; a plain script does not)
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from tiny_models import TINY_SHORTEST_EDGE, tiny_panoptic, tiny_sam2_checkpoint

    shared = Path(os.environ.get("LEADER360V_SHARED_DATA", REPO.parent / "shared" / "data"))
    frames = load_frames(shared, a.work_width)
    h, w = frames[0].shape[:2]
    tiles = [np.ascontiguousarray(t) for f in frames for t in cut_tiles(f, tile_layout(h, w))]
    tile_px = f"{tiles[0].shape[1]}x{tiles[0].shape[0]}"
    want = set(a.only or [])
    rows = []

    def row(backend, role, model, unit, items, fn, load_s=None):
        wall, cpu = timed(fn, items, a.repeats)
        rows.append({"backend": backend, "role": role, "model (tiny config)": model, "input": unit,
                     "wall_s_per_item": round(wall, 3), "cpu_s_per_item": round(cpu, 3),
                     "load_s": "" if load_s is None else round(load_s, 2)})
        print(f"{backend}: {wall:.3f} s wall, {cpu:.3f} s CPU per item", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        tmp = Path(tmp)
        store = LocalStore(tmp / "store")
        os.environ["LEADER360V_MODEL_CACHE"] = str(tmp / "cache")
        # baselines: the default configuration's CPU backends
        if not want or "superpixel" in want:
            sp = SuperpixelEntitySegmentor()
            row("superpixel", "entity (CPU default)", "SLIC 600 + merge", f"tile {tile_px}", tiles, sp.segment)
        for cls in (ColorPriorVoter, ClusterPriorVoter):
            v = cls()
            if not want or v.name in want:
                row(v.name, "voter (CPU default)", "colour/latitude prior", f"frame {w}x{h}", frames, v.segment)
        # SAM2 automatic masks with the propagation checkpoint, from the store
        if not want or "sam2_amg" in want:
            import_model(store, tiny_sam2_checkpoint(tmp / "sam2", image_size=a.sam2_size), "sam2-tiny-bench")
            cfg = PipelineConfig.from_dict({
                "propose": {"entity_backend": "sam2_amg", "layout": "tiles", "work_width": a.work_width,
                            "device": "cpu", "amg_points_per_side": a.points_per_side, "amg_pred_iou_thresh": 0.0,
                            "amg_stability_thresh": 0.0},
                "propagate": {"sam2_model": "tiny", "sam2_checkpoint": "sam2-tiny-bench",
                              "sam2_image_size": a.sam2_size}})
            t0 = time.perf_counter()
            ent = build_backends(cfg, store).entity
            load = time.perf_counter() - t0
            row("sam2_amg", "entity (production)", f"Hiera-tiny @ {a.sam2_size}, {a.points_per_side}^2 points",
                f"tile {tile_px}", tiles, ent.segment, load)
        # the six panoptic voters
        for name, spec in VOTERS.items():
            if want and name not in want:
                continue
            folder = tiny_panoptic(tmp / name, spec.architecture, list(master().maps[spec.label_space]))
            import_model(store, folder, name)
            cfg = PipelineConfig.from_dict({"propose": {
                "layout": "tiles", "device": "cpu", "panoptic_backends": [name], "panoptic_score_thresh": 0.0,
                "panoptic_overlap_thresh": 0.0}})
            t0 = time.perf_counter()
            (voter,) = build_backends(cfg, store).voters
            load = time.perf_counter() - t0
            row(name, "voter (production)",
                f"{spec.architecture} Swin 16-d, {len(voter.class_names)} classes, 640 -> {TINY_SHORTEST_EDGE} px",
                f"tile {tile_px}", tiles, voter.segment, load)
    emit("backends_cpu", rows, {"tiles": len(tiles), "tile": tile_px, "threads": a.threads,
                                "torch": torch.__version__, "repeats": a.repeats})


if __name__ == "__main__":
    main()
