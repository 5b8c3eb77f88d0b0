"""Proposals at the poles: the polar views' entities reach the ERP frame and survive the round trip."""

import cv2
import numpy as np
import pytest

from tasks.backends import build_backends
from tasks.config import PipelineConfig
from tasks.geometry.erp import lonlat_axes
from tasks.geometry.perspective import PerspectiveView
from tasks.labeling.sdr import POLAR_VIEWS, propose_frame

FRAMES = ["0030_000064.jpg", "0098_000193.jpg", "0115_000216.jpg"]


@pytest.mark.parametrize("name", FRAMES)
def test_real_frames_get_polar_proposals_that_survive_the_round_trip(shared_data, name):
    bgr = cv2.imread(str(shared_data / "360vot_samples" / name))
    rgb = cv2.cvtColor(cv2.resize(bgr, (512, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    cfg = PipelineConfig().with_overrides({"propose.work_width": 512, "propose.layout": "tiles"})
    props = propose_frame(rgb, cfg, build_backends(cfg))
    _, lat = lonlat_axes(256, 512)
    polar = [e for e, tiles in props.entity_tiles.items() if any(t in POLAR_VIEWS for t in tiles)]
    assert polar, "no entity came from the polar views"
    caps = np.abs(np.degrees(lat))[:, None] >= 60
    in_caps = np.isin(props.entity, polar) & caps
    assert in_caps.mean() / caps.mean() > 0.5        # the caps are proposed by the polar views
    # a polar entity, sent to its view and back, is the same mask (up to its outline)
    e = max(polar, key=lambda k: (props.entity == k).sum())
    m = props.entity == e
    view = PerspectiveView(lon=0.0, lat=POLAR_VIEWS[-1] if (m & (lat[:, None] > 0)).sum() > (m & (lat[:, None] < 0)).sum()
                           else POLAR_VIEWS[-2], fov_deg=120.0, width=256, height=256)
    back = view.back_mask(view.sample(m.astype(np.uint8), "nearest").astype(bool), 512)
    cov = view.coverage(512)
    inside = cov & caps
    assert (back[inside] == m[inside]).mean() > 0.97


def test_polar_views_can_be_switched_off():
    from tasks.synth import build_scene, render_frames

    rgb, _ = next(render_frames(build_scene(seconds=1.0, fps=3, width=256, seed=0)))
    cfg = PipelineConfig().with_overrides({"propose.polar_views": False, "propose.layout": "tiles"})
    props = propose_frame(rgb, cfg, build_backends(cfg))
    assert not any(t in POLAR_VIEWS for tiles in props.entity_tiles.values() for t in tiles)


@pytest.mark.parametrize("layout", [{"propose.layout": "tiles", "propose.polar_views": True},
                                    {"propose.layout": "sphere"}], ids=["tiles+polar", "sphere"])
def test_pole_object_across_the_cap_edge_stays_one_entity(layout):
    """Seed 5 at its seam-crossing frame has the pole object at -67 deg, across the polar view's
    cap edge (60 deg): at one ERP pixel per view pixel the view cut it in two (IoU 0.66). The
    sphere layout's region graph crosses the pole and must keep it whole too."""
    from itertools import islice

    from tasks.geometry.erp import spherical_iou
    from tasks.labeling.sdr import annotate_frame
    from tasks.synth import build_scene, render_frames

    sc = build_scene(seed=5, width=1024)
    rgb, gt = next(islice(render_frames(sc), sc.events["seam_cross"], None))
    m = gt == sc.roles["pole"][0]
    cfg = PipelineConfig().with_overrides(layout)
    idmap = annotate_frame(rgb, cfg, build_backends(cfg)).idmap
    ids, counts = np.unique(idmap[m], return_counts=True)
    best = ids[np.argmax(counts)]
    assert spherical_iou(m, idmap == best) > 0.9
    second = np.sort(counts)[-2] if ids.size > 1 else 0
    assert second < 0.1 * m.sum()          # no second entity holds a real part of it
