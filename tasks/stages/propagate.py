"""propagate: the tracking pass — the keyframe's objects followed to every frame, refreshed on
the way [M §1.2(e), §1.3].

One pass over the video (issue 10 §3): the propagator steps over every frame exactly once, and
the auto-refine phase (coverage checks, re-SDR and id re-linking, MCR; see
:class:`tasks.labeling.follow.TrackingPass`) corrects its state at the check frames as it goes.
Before, ``refine`` followed the whole video again from frame 0 with its own propagator, so this
stage's frames 1..N-1 were never read and on a GPU SAM2 ran over every video twice; the stat
``propagator_steps_per_frame`` (1.0) records that it no longer does. What needs every frame
first (merging a piece's id into its object's on earlier frames) is the ``refine`` stage's.

Seam-aware and occlusion-aware (see :mod:`tasks.backends.flow`); memory is one frame and one id
map whatever the length of the video, and id maps are written as they are produced. Objects a
person prompted on later frames enter (or are corrected) at their frame.

Outputs: ``idmaps/NNNNN.png``, ``tracks.json``, ``events.json`` (every refresh with its trigger,
coverage per frame both ways) and ``camera.json`` (per frame: the camera rotation from the
previous frame, its inlier ratio, whether it could be estimated and why not, and the
orientation relative to frame 0).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from tasks.backends import build_backends
from tasks.backends.flow import build_propagator
from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.geometry.rotation import rotation_matrix
from tasks.labeling import prompts as prompts_mod
from tasks.labeling.follow import TrackingPass
from tasks.labeling.sdr import Annotator, EntityLabel
from tasks.labeling.tracks import Track, tracks_to_json
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.video.framestore import Frames
from tasks.vocabulary import master


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    frames = Frames(store, inputs.output_key(store, "decode", "frames"))
    n, fps, width = len(frames), frames.fps, frames.width
    oprefix = inputs.output_key(store, "sdr", "objects")
    idmap0 = idmap_png.decode_png(store.get_bytes(oprefix + "00000.png"))
    objects = store.get_json(oprefix + "00000.json")["objects"]
    tracks = {int(k): Track(o["category"], bool(o["isthing"]), o.get("provenance", {}), 0,
                            "prompt" if o.get("provenance", {}).get("source") == "prompt" else "sdr")
              for k, o in objects.items()}
    prompts = prompts_mod.load_prompts(store, inputs.video_id, config, n, width)
    if prompts is not None:
        for f in sorted(prompts.frames):
            for tid in np.unique(prompts.frames[f]).tolist():
                if tid and tid not in tracks:
                    cat = prompts.tracks[tid]
                    tracks[tid] = Track(cat, not master().is_stuff(cat), {"source": "prompt"}, f, "prompt")
    backends = None
    annotator = Annotator(config, *_keyframe_entities(inputs, store))

    def annotate(rgb: np.ndarray):
        nonlocal backends
        if backends is None:  # only a refresh needs the segmentors and the verifier
            backends = build_backends(config, store)
        # proposed in frame 0's orientation, the last keyframe's entities as prior (issue 10)
        cam = tp.camera[-1] if tp.camera else {}
        return annotator(rgb, backends, orientation=_orientation(tp.camera),
                         new_scene=cam.get("reason") == "cut" or bool(cam.get("cut")))

    def question(prev_rgb, prev_idm, rgb):
        nonlocal backends
        if backends is None:
            backends = build_backends(config, store)
        return _vlm_question(backends, config, prev_rgb, prev_idm, rgb)

    propagator = build_propagator(config, width, store=store)
    tp = TrackingPass(config, fps=fps, first=idmap0, tracks=tracks, propagator=propagator, annotate=annotate,
                      prompts=prompts, question=question, estimate=_estimator())
    present = np.zeros(0, np.int64)
    bar = tqdm(total=n, desc="propagate", unit="frame", disable=not inputs.params.get("progress") or None)
    for t, _frame, idm in tp.run(frames):
        writer.put_bytes(f"idmaps/{t:05d}.png", idmap_png.encode_png(idm), "image/png")
        counts = np.bincount(idm.ravel())
        if counts.size > present.size:
            present = np.concatenate([present, np.zeros(counts.size - present.size, np.int64)])
        present[:counts.size] += counts > 0
        bar.update(1)
    bar.close()
    events = tp.events
    writer.put_json("tracks.json", tracks_to_json(tracks))
    writer.put_json("events.json", {"r0": tp.r0, "rho": tp.rho, "step": tp.step, "keyframe_every": tp.key_every,
                                    "coverage_mode": config.refine.coverage, "coverage": tp.coverage_series,
                                    # both measures, always: the method's pixel fraction over-weights the poles
                                    "coverage_pixel": tp.coverage_pixel, "coverage_sphere": tp.coverage_sphere,
                                    "events": events})
    failed = [c for c in tp.camera if not c["ok"] and c["frame"] > 0]
    writer.put_json("camera.json", {"convention": "rotation: content at unit vector v in frame t-1 is at "
                                                  "rotation @ v in frame t; ypr_deg: the camera's yaw, pitch, roll "
                                                  "turn (tasks.geometry.rotation)", "frames": tp.camera})
    cov = tp.coverage_series
    return StageOutput(
        outputs={"idmaps": writer.key("idmaps/"), "tracks": writer.key("tracks.json"),
                 "events": writer.key("events.json"), "camera": writer.key("camera.json")},
        stats={"frames": n, "tracks": sum(tr.active for tr in tracks.values()),
               "propagator_steps": tp.counter.steps, "propagator_steps_per_frame": tp.steps_per_frame,
               "checks": tp.checks, "refreshes": len(events), "r0": round(tp.r0, 4), "rho": round(tp.rho, 4),
               "cuts": sum(e["mode"] == "cut" for e in events),
               # refreshes the appearance trigger asked for (each one SDR; refine.appear_trigger)
               "appear_refreshes": sum("appeared" in e.get("trigger", []) for e in events),
               # held frames a new track was carried back over (refine.backfill_s)
               "backfilled_frames": sum(sum(e.get("backfilled", {}).values()) for e in events),
               "camera_failed_frames": len(failed),
               "new_tracks": sum(len(e.get("new", [])) + len(e.get("created", [])) for e in events),
               "reidentified": sum(len(e.get("reidentified", [])) for e in events),
               "mcr_regions": sum(e.get("regions", 0) for e in events),
               "mcr_ambiguous": sum(e.get("ambiguous", 0) for e in events),
               "min_coverage": min(cov) if cov else None,
               "frames_per_track": {str(k): int(v) for k, v in enumerate(present.tolist()) if k and v}},
    )


def _keyframe_entities(inputs: StageInputs, store: ObjectStore) -> tuple:
    """Frame 0's entity map and entity labels from the sdr stage, the prior of the refreshes
    ((None, None) for a run recorded before the stage wrote them)."""
    try:
        key = inputs.output_key(store, "sdr", "entity")
    except KeyError:
        return None, None
    labels = {int(e): EntityLabel.from_json(v) for e, v in store.get_json(key + "00000.json").items()}
    return idmap_png.decode_png(store.get_bytes(key + "00000.png")).astype(np.int32), labels


def _orientation(camera: list[dict]) -> np.ndarray | None:
    """The content rotation of the latest frame relative to frame 0, from its camera record
    (``orientation_ypr_deg`` is the camera's turn C, the content moves by C.T)."""
    if not camera or "orientation_ypr_deg" not in camera[-1]:
        return None
    yaw, pitch, roll = np.radians(camera[-1]["orientation_ypr_deg"])
    return rotation_matrix(float(yaw), float(pitch), float(roll)).T


def _estimator():
    """Camera motion for propagators that do not measure it (SAM2, or batched steps): each
    frame's features are computed once and kept for the next pair."""
    from tasks.geometry.camera_motion import estimate_rotation, frame_features

    cache: dict = {}

    def estimate(prev_rgb: np.ndarray, rgb: np.ndarray):
        fp = cache.get(id(prev_rgb))
        if fp is None or fp[0] is not prev_rgb:
            fp = (prev_rgb, frame_features(prev_rgb))
        fc = (rgb, frame_features(rgb))
        cache.clear()
        cache[id(rgb)] = fc
        return estimate_rotation(fp[1], fc[1])

    return estimate


def _vlm_question(backends, config, prev_rgb, prev_idm, rgb):
    """MCR's question for ambiguous regions, when the verifier is a VLM that can answer it."""
    ask_model = getattr(backends.verifier, "same_object", None)
    if ask_model is None or prev_rgb is None or prev_idm is None:
        return None
    import logging

    from tasks.labeling.views import verifier_view

    vc = config.verify

    def ask(region, track: int):
        before, _, _ = verifier_view(prev_rgb, prev_idm == track, fov_deg=vc.view_fov_deg, width=vc.view_width,
                                     height=vc.view_height)
        now, _, _ = verifier_view(rgb, region, fov_deg=vc.view_fov_deg, width=vc.view_width, height=vc.view_height)
        same, error = ask_model(before, now)
        if error:
            logging.getLogger(__name__).info("VLM could not route a blank region (%s); the geometry decides", error)
        return same

    return ask
