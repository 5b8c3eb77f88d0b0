"""Each stage's own outputs, from the tiny clip labeled once (see conftest.labeled_tiny)."""

import numpy as np
import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.formats.idmap import decode_png
from tasks.labeling.proposals import FrameProposals
from tasks.stages import verify
from tasks.stages.runner import execute, load_manifest, output_key
from tasks.video.framestore import Frames
from tasks.vocabulary import master


def manifest(labeled, stage):
    store, vid, run, _ = labeled
    return store, load_manifest(store, vid, run, stage)


def test_decode_frames_are_shared_between_runs(labeled_tiny):
    store, m = manifest(labeled_tiny, "decode")
    frames = Frames(store, output_key(store, m, "frames"))
    assert len(frames) == 16 and frames.get(0).shape == (128, 256, 3)
    assert output_key(store, m, "frames").endswith("frames/8x256/")
    with pytest.raises(IndexError):
        frames.get(16)


def test_propose_keyframe_proposals(labeled_tiny):
    store, m = manifest(labeled_tiny, "propose")
    props = FrameProposals.load(store, output_key(store, m, "proposals"), 0)
    assert props.entity.shape == (128, 256) and props.entity.max() == m["stats"]["entities"]["0"]
    assert set(props.voters) == {"color_prior", "cluster_prior"}
    assert props.spaces == {"color_prior": "master", "cluster_prior": "coco_panoptic"}
    assert set(props.entity_colors) == set(range(1, props.entity.max() + 1))


def test_verify_records_votes_and_verdicts(labeled_tiny):
    store, m = manifest(labeled_tiny, "verify")
    labels = verify.load(store, output_key(store, m, "labels"), 0)
    vocab = master()
    assert labels and all(lab.label in vocab or lab.label == "unknown" for lab in labels.values())
    voted = [lab for lab in labels.values() if lab.how == "vote"]
    assert voted and all(len(lab.votes) >= 2 for lab in voted)
    assert m["stats"]["entities"] == m["stats"]["accepted_by_vote"] + m["stats"]["to_verifier"]


def test_sdr_objects_are_exclusive_with_stuff_merged(labeled_tiny):
    store, m = manifest(labeled_tiny, "sdr")
    prefix = output_key(store, m, "objects")
    idmap = decode_png(store.get_bytes(prefix + "00000.png"))
    objs = store.get_json(prefix + "00000.json")["objects"]
    assert set(np.unique(idmap).tolist()) - {0} == {int(k) for k in objs}
    stuff = [o["category"] for o in objs.values() if not o["isthing"]]
    assert len(stuff) == len(set(stuff))               # one object per stuff class
    assert {"sky", "grass"} <= set(stuff)
    # the keyframe's entities and their labels: the prior of the tracking pass's refreshes (issue 10)
    eprefix = output_key(store, m, "entity")
    entity = decode_png(store.get_bytes(eprefix + "00000.png"))
    props = FrameProposals.load(store, output_key(store, load_manifest(store, labeled_tiny[1], labeled_tiny[2],
                                                                        "propose"), "proposals"), 0)
    assert np.array_equal(entity, props.entity)
    assert {int(e) for e in store.get_json(eprefix + "00000.json")} == set(range(1, int(entity.max()) + 1))


def test_propagate_and_refine_cover_every_frame(labeled_tiny):
    store, pm = manifest(labeled_tiny, "propagate")
    _, rm = manifest(labeled_tiny, "refine")
    for m in (pm, rm):
        prefix = output_key(store, m, "idmaps")
        assert len([i for i in store.list(prefix)]) == 16
    # one tracking pass: the propagator stepped over every frame after the first exactly once
    assert pm["stats"]["propagator_steps"] == 15 and pm["stats"]["propagator_steps_per_frame"] == 1.0
    assert rm["stats"]["propagator_steps_per_frame"] == 1.0 and rm["stats"]["checks"] == 7
    camera = store.get_json(output_key(store, rm, "camera"))["frames"]
    assert [c["frame"] for c in camera] == list(range(16)) and camera[0]["orientation_ypr_deg"] == [0.0, 0.0, 0.0]
    assert all(c["reason"] in (None, "uniform", "too_few_matches", "low_inliers", "cut") for c in camera)
    events = store.get_json(output_key(store, rm, "events"))
    assert len(events["coverage"]) == 16 and events["step"] == 2   # ceil(8 fps / 5 Hz)
    assert events["rho"] == pytest.approx(events["r0"] - 0.002 * 2)
    tracks = store.get_json(output_key(store, rm, "tracks"))["tracks"]
    assert all(t["category"] in master() or t["category"] == "unknown" for t in tracks.values())


def test_qa_flags_and_preview(labeled_tiny):
    store, m = manifest(labeled_tiny, "qa")
    flags = store.get_json(output_key(store, m, "flags"))
    types = {"unknown_label", "verifier_error", "short_track", "coverage_dip", "seam_discontinuity", "fragmented",
             "camera_motion"}
    assert all(f["type"] in types and f["message"] for f in flags["flags"])
    assert all(f["frames"] and f["frames"][0][0] <= f["frames"][0][1] for f in flags["flags"])
    assert store.stat(output_key(store, m, "preview")).size > 1000


def test_a_new_run_with_other_thresholds_writes_beside(labeled_tiny, tmp_path):
    import shutil

    from tasks.storage import LocalStore

    src, vid, run, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "s")
    store = LocalStore(tmp_path / "s")
    cfg = PipelineConfig().with_overrides({"refine.keyframe_interval_s": 0.0})
    execute("ingest", store=store, config=cfg, params={"key": "raw/tiny.mp4"})
    for stage in ("decode", "propose", "verify", "sdr", "propagate", "refine"):
        execute(stage, store=store, config=cfg, video_id=vid)
    assert store.exists(layout.manifest_key(vid, run, "refine")) and store.exists(layout.manifest_key(vid, cfg.hash, "refine"))
    # decode reused the frames of the first run: same fps and width
    assert load_manifest(store, vid, cfg.hash, "decode")["keys"]["frames"] == load_manifest(store, vid, run, "decode")["keys"]["frames"]


def test_review_package_links_every_flag_crop(labeled_tiny, capsys):
    from tasks.cli import main

    store, vid, run, _ = labeled_tiny
    assert main(["review", "--video-id", vid, "--store", str(store.root)]) == 0
    import json

    pkg = json.loads(capsys.readouterr().out)
    assert pkg["run"] == run and pkg["preview"].endswith("preview.mp4")
    for f in pkg["flags"]:
        if "crop" in f:
            assert f["crop_url"].endswith(".jpg")
    assert main(["review", "--video-id", "0" * 16, "--store", str(store.root)]) == 6
