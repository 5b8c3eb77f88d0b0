"""Motion-Continuity Refinement: blank regions routed by geometry."""

import numpy as np

from tasks.labeling.mcr import blank_regions, route_and_fill
from tasks.labeling.sdr import FrameObjects
from tasks.labeling.tracks import Track

H, W = 32, 64


def base():
    m = np.zeros((H, W), np.uint16)
    m[:16] = 1   # sky
    m[16:] = 2   # grass
    return m


def test_routes_border_existing_new_and_ambiguous():
    cur = base()
    prev = base()
    prev[4:8, 20:26] = 5                 # a track at t-1 ...
    cur[4:8, 20:26] = 0                  # ... whose place is blank now: existing
    cur[10:14, 0:3] = 0                  # blank at the left border: border
    cur[10:14, W - 3:] = 0
    cur[24:28, 40:46] = 0                # blank where nothing was: new
    regions = {r.route: r for r in blank_regions(cur, prev, min_area=4, things={5, 6})}
    assert set(regions) == {"border", "existing", "new"}
    assert regions["existing"].prev_track == 5 and not regions["existing"].ambiguous
    prev[10:14, 0:3] = 6                 # the border region also lies on a t-1 track: ambiguous
    amb = [r for r in blank_regions(cur, prev, 4, things={5, 6}) if r.route == "border"][0]
    assert amb.ambiguous


def test_fill_joins_across_the_seam_reuses_existing_and_creates_new():
    rgb = np.zeros((H, W, 3), np.uint8)
    lab = np.zeros((H, W, 3), np.float32)
    lab[..., 0] = 50
    tracks = {1: Track("sky", False), 2: Track("grass", False), 3: Track("ball", True), 5: Track("car", True)}
    cur = base()
    cur[10:14, W - 6:] = 3               # track 3 on the right of the seam
    cur[10:14, 0:4] = 0                  # its continuation on the left is blank
    prev = cur.copy()
    prev[4:8, 20:26] = 5
    cur[4:8, 20:26] = 0                  # existing: track 5 was here, same colour now
    prev_lab = lab.copy()
    cur[24:28, 40:46] = 0                # new
    lab[24:28, 40:46, 0] = 90            # looks different from anything before

    def annotate(frame_rgb):
        # an SDR that sees the ball whole (across the seam), and a new object
        m = base()
        m[10:14, W - 6:] = 7
        m[10:14, 0:4] = 7
        m[24:28, 40:46] = 8
        rolled_back = m if frame_rgb is rgb else np.roll(m, W // 2, axis=1)
        return FrameObjects(rolled_back, {1: {"category": "sky", "isthing": False}, 2: {"category": "grass", "isthing": False},
                                          7: {"category": "ball", "isthing": True}, 8: {"category": "unknown", "isthing": True}})

    out, ev = route_and_fill(cur, prev, lab, prev_lab, tracks, frame=4, annotate=annotate, rgb=rgb, min_area=4)
    assert (out[10:14, 0:4] == 3).all() and 3 in ev["joined"]          # one id on both sides of the seam
    assert (out[4:8, 20:26] == 5).all()                                  # existing track comes back
    new_id = ev["created"][0]
    assert (out[24:28, 40:46] == new_id).all() and tracks[new_id].born == 4
    assert ev["routes"] == {"border": 1, "existing": 1, "new": 1} and (out > 0).all()


def test_ambiguous_regions_ask_the_vlm_only_when_one_is_configured():
    rgb = np.zeros((H, W, 3), np.uint8)
    lab = np.zeros((H, W, 3), np.float32)
    tracks = {1: Track("sky", False), 2: Track("grass", False), 6: Track("car", True)}
    prev = base()
    prev[10:14, 0:3] = 6                 # a car at t-1 at the left border ...
    cur = base()
    cur[10:14, 0:3] = 0                  # ... now blank: touches the seam AND lies on a track
    cur[10:14, W - 3:] = 0

    def annotate(frame_rgb):
        return FrameObjects(base(), {1: {"category": "sky", "isthing": False}, 2: {"category": "grass", "isthing": False}})

    asked = []

    def ask(mask, track):
        asked.append(track)
        return True

    out, ev = route_and_fill(cur, prev, lab, lab, tracks, frame=5, annotate=annotate, rgb=rgb, min_area=4, ask=ask)
    assert asked == [6] and ev["asked"] == 1 and ev["routes"]["existing"] == 1 and (out[10:14, 0:3] == 6).all()
    out, ev = route_and_fill(cur, prev, lab, lab, tracks, frame=5, annotate=annotate, rgb=rgb, min_area=4)
    assert ev["asked"] == 0 and ev["ambiguous"] == 1 and ev["routes"]["border"] == 1
