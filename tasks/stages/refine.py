"""refine: the auto-refine phase [M §1.3] — coverage checks, re-SDR, id re-linking.

On the check grid (``t % ceil(fps / 5) == 0``) a frame is re-annotated when

* its coverage falls under rho = r0 - tau * ceil(fps / 5) (r0 = coverage of frame 0), measured
  on the sphere by default (the method uses pixels, see :mod:`tasks.labeling.coverage`);
* an object's area dropped by more than half since the previous check [M §6 row 2];
* a keyframe is due (every ``keyframe_interval_s``; the coverage rule cannot see an object that
  appears in front of labeled background).

The fresh SDR is re-linked to the current tracks (:mod:`tasks.labeling.relink`) and following
resumes from the merged id map; a track the fresh SDR shows to be a piece of another object
takes that object's id on every frame, earlier ones included (:mod:`tasks.labeling.merge`).
Refine follows the video from frame 0 with its own propagator (identical to the propagate
stage's output until the first re-annotation) so that it knows where occluded objects should
reappear; re-linking uses that to give them their id back.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from tasks.backends import build_backends
from tasks.backends.flow import build_propagator
from tasks.backends.superpixel import to_lab
from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.labeling import prompts as prompts_mod
from tasks.labeling.coverage import coverage, track_areas
from tasks.labeling.follow import follow
from tasks.labeling.mcr import route_and_fill
from tasks.labeling.merge import Contacts, merge_lut
from tasks.labeling.relink import RelinkState, relink, remember
from tasks.labeling.sdr import annotate_frame
from tasks.labeling.tracks import tracks_from_json, tracks_to_json
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.video.framestore import Frames

log = logging.getLogger(__name__)


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    frames = Frames(store, inputs.output_key(store, "decode", "frames"))
    n, fps, width = len(frames), frames.fps, frames.width
    pprefix = inputs.output_key(store, "propagate", "idmaps")
    tracks = tracks_from_json(store.get_json(inputs.output_key(store, "propagate", "tracks")))
    prompts = prompts_mod.load_prompts(store, inputs.video_id, config, n, width)
    rc = config.refine
    step = config.refine_step(fps)
    key_every = 0
    if rc.keyframe_interval_s > 0:
        key_every = max(step, int(round(rc.keyframe_interval_s * fps / step)) * step)
    # the per-object trigger watches objects of some size; slivers come and go by themselves
    min_area = max(4 * config.min_area(width, config.propagate.min_area_px_at_2048), int(5e-4 * width * width / 2))

    def load(t: int):
        return idmap_png.decode_png(store.get_bytes(f"{pprefix}{t:05d}.png"))

    first = load(0)
    r0 = coverage(first, rc.coverage)
    rho = r0 - rc.tau * step
    backends = build_backends(config)
    propagator = build_propagator(config, width, store=store)
    state = RelinkState()
    last_areas = track_areas(first)
    events: list[dict] = []
    checks = 0
    cov_series = []
    cov_both: list[tuple[float, float]] = []
    prev_idm, prev_lab, prev_rgb = None, None, None
    contacts = Contacts() if rc.merge_split_tracks else None
    if contacts is not None:
        contacts.observe(first, tracks)
    may_merge = contacts.may_merge if contacts is not None else None
    bar = tqdm(total=n, desc="refine", unit="frame", disable=not inputs.params.get("progress") or None)
    for t, frame, idm in follow(frames, 0, first, propagator, prompts, chunk=config.propagate.sam2_chunk_frames,
                                every=step):
        if t > 0 and t % step == 0:
            checks += 1
            cov = coverage(idm, rc.coverage)
            areas = track_areas(idm)
            reasons = []
            if cov < rho:
                reasons.append("coverage")
            dropped = [k for k, a in last_areas.items() if a >= min_area and areas.get(k, 0) < (1 - rc.area_drop) * a]
            if dropped:
                reasons.append("area_drop")
            if key_every and t % key_every == 0:
                reasons.append("keyframe")
            if contacts is not None:
                contacts.observe(idm, tracks)
            lab = to_lab(frame)
            if reasons == ["coverage"] and rc.mcr:
                idm, event = route_and_fill(idm, prev_idm, lab, prev_lab, tracks, frame=t,
                                            annotate=lambda rgb: annotate_frame(rgb, config, backends), rgb=frame,
                                            min_area=min_area, ask=_vlm_question(backends, config, prev_rgb, prev_idm, frame))
                event.update(trigger=reasons, mode="mcr", coverage_before=round(cov, 4),
                             coverage_after=round(coverage(idm, rc.coverage), 4))
                events.append(event)
                propagator.reset(frame, idm)
                areas = track_areas(idm)
            elif reasons:
                fresh = annotate_frame(frame, config, backends)
                idm, event = relink(idm, fresh, tracks, frame=t, reid_iou=rc.reid_iou, lab=lab, state=state,
                                    max_lost_frames=int(round(3 * fps)),
                                    hidden=propagator.hidden_objects(idm.shape), min_new_area=min_area,
                                    keep_unmatched=rc.keep_unmatched_tracks, may_merge=may_merge)
                p = prompts.at(t, width) if prompts is not None else None
                if p is not None:
                    idm = prompts_mod.apply(idm, p)
                event.update(trigger=reasons, mode="re-sdr", coverage_before=round(cov, 4),
                             coverage_after=round(coverage(idm, rc.coverage), 4), dropped_tracks=dropped)
                events.append(event)
                propagator.reset(frame, idm)
                propagator.forget(t_piece for t_piece, _, _ in event.get("merged", []))
                areas = track_areas(idm)
            remember(state, idm, lab, t, tracks)
            last_areas = areas
        if t % step == step - 1 or step == 1:  # the frame before the next check, for MCR's t-1
            prev_idm, prev_lab, prev_rgb = idm, to_lab(frame), frame
        cov_series.append(round(coverage(idm, rc.coverage), 5))
        cov_both.append((round(coverage(idm, "pixel"), 5), round(coverage(idm, "sphere"), 5)))
        writer.put_bytes(f"idmaps/{t:05d}.png", idmap_png.encode_png(idm), "image/png")
        bar.update(1)
    bar.close()
    rewritten = _merge_pieces_back(store, writer, tracks, events)
    writer.put_json("tracks.json", tracks_to_json(tracks))
    writer.put_json("events.json", {"r0": r0, "rho": rho, "step": step, "keyframe_every": key_every,
                                    "coverage_mode": rc.coverage, "coverage": cov_series,
                                    # both measures, always: the method's pixel fraction over-weights the poles
                                    "coverage_pixel": [p for p, _ in cov_both],
                                    "coverage_sphere": [s for _, s in cov_both], "events": events})
    return StageOutput(
        outputs={"idmaps": writer.key("idmaps/"), "tracks": writer.key("tracks.json"),
                 "events": writer.key("events.json")},
        stats={"frames": n, "checks": checks, "refreshes": len(events), "r0": round(r0, 4), "rho": round(rho, 4),
               "tracks": sum(tr.active for tr in tracks.values()),
               "merged_tracks": sum(not tr.active for tr in tracks.values()), "merge_rewritten_frames": rewritten,
               "new_tracks": sum(len(e.get("new", [])) + len(e.get("created", [])) for e in events),
               "reidentified": sum(len(e.get("reidentified", [])) for e in events),
               "mcr_regions": sum(e.get("regions", 0) for e in events),
               "mcr_ambiguous": sum(e.get("ambiguous", 0) for e in events),
               "min_coverage": min(cov_series) if cov_series else None},
    )


def _merge_pieces_back(store: ObjectStore, writer: StageWriter, tracks, events: list[dict]) -> int:
    """Give merged pieces their object's id on the frames written before the merge.

    Reads back only the frames between the earliest merged piece's birth and the last merge;
    returns how many frames changed.
    """
    lut = merge_lut(tracks)
    if lut is None:
        return 0
    first = min(tr.born for tr in tracks.values() if not tr.active)
    last = max(e["frame"] for e in events if e.get("merged"))
    changed = 0
    for t in range(first, last):
        key = writer.key(f"idmaps/{t:05d}.png")
        idm = idmap_png.decode_png(store.get_bytes(key))
        out = lut[idm]
        if not np.array_equal(out, idm):
            writer.put_bytes(f"idmaps/{t:05d}.png", idmap_png.encode_png(out), "image/png")
            changed += 1
    return changed


def _vlm_question(backends, config, prev_rgb, prev_idm, rgb):
    """MCR's question for ambiguous regions, when the verifier is a VLM that can answer it."""
    ask_model = getattr(backends.verifier, "same_object", None)
    if ask_model is None or prev_rgb is None or prev_idm is None:
        return None
    from tasks.labeling.views import verifier_view

    vc = config.verify

    def ask(region, track: int):
        before, _, _ = verifier_view(prev_rgb, prev_idm == track, fov_deg=vc.view_fov_deg, width=vc.view_width,
                                     height=vc.view_height)
        now, _, _ = verifier_view(rgb, region, fov_deg=vc.view_fov_deg, width=vc.view_width, height=vc.view_height)
        same, error = ask_model(before, now)
        if error:
            log.info("VLM could not route a blank region (%s); the geometry decides", error)
        return same

    return ask
