"""The CPU propagator finds an occluded object again where it comes out, not only where it was predicted."""

import numpy as np
import pytest

from tasks.backends.flow import FlowPropagator
from tasks.config import FlowTuning
from tasks.geometry.erp import spherical_iou
from tasks.synth import build_scene, render_frames


def _animal_behind_the_signboard(shared_data, tuning):
    """The benchmark's seed-2 handheld clip (photo-textured, frames as rendered), propagator alone
    at the pipeline's working width: per frame after the first, the occluded object's pixels in
    the truth and in the output, and its spherical J (1.0 where neither has a pixel of it)."""
    from tasks.synth.look import load_photos

    photos = load_photos(sorted((shared_data / "erp_images").glob("*.jpg"))
                         + sorted((shared_data / "360vot_samples").glob("*.jpg")))
    sc = build_scene(seconds=4.0, fps=15, width=1024, seed=2, camera="handheld", photos=photos)
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


@pytest.mark.slow
def test_an_object_coming_out_off_its_prediction_is_found_as_it_comes_out(shared_data):
    """Issue 10 (auto mode's largest loss: an occluded object lost while partly visible). The
    animal changes its own motion behind the signboard and comes out ~20 px from its predicted
    place. The re-acquisition search scanned shifts a third of its reach apart (up to 17 px), where
    a textured object's colour match falls off within a few px, and counted matches on the
    occluder, whose colours match the animal's on ~10% of its points at the predicted place: the
    sliver coming out was missed until 45% of the animal showed. Now the scan is dense
    (propagate.tuning.flow.reacquire_scan_px) and counts matches only where the object can show
    (reacquire_open_only), against the chance level of its colours anywhere (without that, chance
    matches on the grass beside the signboard put ~250 px of it there on every hidden frame).
    Frames as rendered, propagator alone: at the first frame a quarter of it shows, J 0.00 with the
    earlier search (the defaults; back 3 frames later), 0.94 with the opt-in one; mean J 0.837 ->
    0.879; no pixel of it while it is wholly hidden, with either. (Opt-in: see
    FlowTuning.reacquire_open_only for why it is not on yet.)"""
    tuning = FlowTuning(reacquire_scan_px=3.0, reacquire_open_only=True)
    gt_a, pr_a, js = _animal_behind_the_signboard(shared_data, tuning)
    gone = np.flatnonzero(gt_a == 0)
    assert gone.size >= 5, "the clip must hide the object"
    assert (pr_a[gone] == 0).all(), pr_a[gone]
    after = np.arange(gone[-1] + 1, len(gt_a))
    quarter = after[gt_a[after] >= 0.25 * gt_a.max()][0]
    assert js[quarter] > 0.8, np.round(js, 2)
    assert js[quarter:].mean() > 0.95, np.round(js, 2)
    assert js.mean() > 0.865, np.round(js, 2)
