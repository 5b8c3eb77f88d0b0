"""The benchmark's occluded object, followed by the CPU propagator alone (issue 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.backends.flow import FlowPropagator
from tasks.config import FlowTuning
from tasks.geometry.erp import spherical_iou
from tasks.synth import build_scene, render_frames


def occluded_object_frames(shared_data: Path, seed: int, tuning: FlowTuning | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On the benchmark's photo-textured handheld clip of ``seed`` (frames as rendered), the CPU
    propagator alone at the pipeline's working width (512): per frame after the first, the
    occluded object's true area and output area in pixels, and its spherical J (1.0 where
    neither has a pixel of it)."""
    from tasks.synth.look import load_photos

    photos = load_photos(sorted((shared_data / "erp_images").glob("*.jpg"))
                         + sorted((shared_data / "360vot_samples").glob("*.jpg")))
    sc = build_scene(seconds=4.0, fps=15, width=1024, seed=seed, camera="handheld", photos=photos)
    k = sc.roles["occluded"][0]
    frames = list(render_frames(sc))
    p = FlowPropagator(512, tuning=tuning)
    p.reset(*frames[0])
    gt_a, pr_a, js = [], [], []
    for rgb, gt in frames[1:]:
        out = p.step(rgb)
        g, o = gt == k, out == k
        gt_a.append(int(g.sum()))
        pr_a.append(int(o.sum()))
        js.append(spherical_iou(o, g) if g.any() or o.any() else 1.0)
    return np.array(gt_a), np.array(pr_a), np.array(js)
