"""refine, the offline post-pass of the tracking pass: a piece merged into its object at a later
refresh takes the object's id on the earlier frames too; nothing to merge, nothing copied."""

import numpy as np

from tasks.config import PipelineConfig
from tasks.formats.idmap import decode_png, encode_png
from tasks.labeling.tracks import Track, tracks_to_json
from tasks.stages import refine
from tasks.stages.contract import StageInputs, StageWriter
from tasks.storage import LocalStore


def _propagated(store, tracks, maps, events):
    """What the propagate stage commits, as the runner hands it to refine."""
    w = StageWriter(store, "videos/v/runs/r/propagate/")
    for t, m in enumerate(maps):
        w.put_bytes(f"idmaps/{t:05d}.png", encode_png(m))
    w.put_json("tracks.json", tracks_to_json(tracks))
    w.put_json("events.json", {"r0": 0.5, "rho": 0.49, "step": 1, "events": events})
    w.put_json("camera.json", {"frames": []})
    keys = {"idmaps": w.key("idmaps/"), "tracks": w.key("tracks.json"), "events": w.key("events.json"),
            "camera": w.key("camera.json")}
    return StageInputs("v", "r", upstream={"propagate": {"keys": keys, "stats": {"frames": len(maps), "checks": 4,
                                                                                 "propagator_steps_per_frame": 1.0}},
                                           "decode": {"keys": {}, "stats": {}}})


def _maps(n=6):
    maps = []
    for t in range(n):
        m = np.zeros((16, 32), np.uint16)
        m[4:10, 4:10] = 1
        if t < 3:
            m[4:10, 10:13] = 2            # the piece, followed beside its object until the merge at 3
        else:
            m[4:10, 10:13] = 1
        maps.append(m)
    return maps


def test_merged_piece_takes_the_objects_id_on_earlier_frames(tmp_path):
    store = LocalStore(tmp_path / "s")
    tracks = {1: Track("sports ball", True), 2: Track("sports ball", True, merged_into=1)}
    maps = _maps()
    inputs = _propagated(store, tracks, maps, [{"frame": 3, "mode": "re-sdr", "merged": [[2, 1, 0.9]]}])
    out = refine.run(inputs, PipelineConfig(), store, StageWriter(store, "videos/v/runs/r/refine/"))
    got = [decode_png(store.get_bytes(f"{out.outputs['idmaps']}{t:05d}.png")) for t in range(6)]
    assert all(set(np.unique(g).tolist()) == {0, 1} for g in got)
    assert all((g == np.where(m == 2, 1, m)).all() for g, m in zip(got, maps))
    assert out.stats["merge_rewritten_frames"] == 3 and out.stats["merged_tracks"] == 1 and out.stats["tracks"] == 1
    assert out.stats["propagator_steps_per_frame"] == 1.0
    assert out.outputs["camera"] == inputs.upstream["propagate"]["keys"]["camera"]
    assert store.get_json(out.outputs["events"])["merge_rewritten_frames"] == 3


def test_nothing_to_merge_references_the_tracking_pass_id_maps(tmp_path):
    store = LocalStore(tmp_path / "s")
    inputs = _propagated(store, {1: Track("sports ball", True), 2: Track("sports ball", True)}, _maps(), [])
    out = refine.run(inputs, PipelineConfig(), store, StageWriter(store, "videos/v/runs/r/refine/"))
    assert out.outputs["idmaps"] == inputs.upstream["propagate"]["keys"]["idmaps"]
    assert out.stats["merge_rewritten_frames"] == 0 and not list(store.list("videos/v/runs/r/refine/idmaps/"))
