"""refine: what the tracking pass can only do once every frame is known [ours, issue 10 §3].

The auto-refine phase itself [M §1.3] — coverage checks, re-SDR, id re-linking, MCR — runs inside
the one tracking pass of the ``propagate`` stage, so the propagator (SAM2 on a GPU) steps over
every frame once. What is left needs the whole video and no propagator:

* **merging pieces back**: a track a refresh showed to be a piece of another object
  (``merged_into``, :mod:`tasks.labeling.merge`) takes that object's id on every frame since it
  was born, earlier ones included — labels are made offline, so a split the segmentor made on
  frame 0 need not stay in the release. Only the frames between the earliest merged piece's birth
  and the last merge are decoded and rewritten; the others are copied as they are;
* the final id maps, track table, events (with how many frames the merge rewrote) and the
  camera record, for ``qa``.

With nothing to merge, the id maps are the propagate stage's, referenced rather than copied.
"""

from __future__ import annotations

from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.labeling.merge import merge_lut
from tasks.labeling.tracks import tracks_from_json, tracks_to_json
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    pstats = inputs.stats("propagate")
    n = int(pstats["frames"])
    pprefix = inputs.output_key(store, "propagate", "idmaps")
    tracks = tracks_from_json(store.get_json(inputs.output_key(store, "propagate", "tracks")))
    events = store.get_json(inputs.output_key(store, "propagate", "events"))
    lut = merge_lut(tracks)
    rewritten = 0
    if lut is None:
        idmaps = pprefix
    else:
        first = min(tr.born for tr in tracks.values() if not tr.active)
        last = max(e["frame"] for e in events["events"] if e.get("merged"))
        for t in range(n):
            data = store.get_bytes(f"{pprefix}{t:05d}.png")
            if first <= t < last:
                idm = idmap_png.decode_png(data)
                out = lut[idm]   # the table covers every id the tracking pass gave
                if (out != idm).any():
                    data = idmap_png.encode_png(out)
                    rewritten += 1
            writer.put_bytes(f"idmaps/{t:05d}.png", data, "image/png")
        idmaps = writer.key("idmaps/")
    events["merge_rewritten_frames"] = rewritten
    writer.put_json("tracks.json", tracks_to_json(tracks))
    writer.put_json("events.json", events)
    outputs = {"idmaps": idmaps, "tracks": writer.key("tracks.json"), "events": writer.key("events.json")}
    camera = inputs.upstream["propagate"].get("keys", {}).get("camera")
    if camera is not None:
        outputs["camera"] = camera   # referenced, not copied (as qa references these id maps)
    keep = ("checks", "refreshes", "r0", "rho", "new_tracks", "reidentified", "mcr_regions", "mcr_ambiguous",
            "min_coverage", "cuts", "camera_failed_frames", "propagator_steps_per_frame",
            "appear_refreshes", "backfilled_frames")
    return StageOutput(
        outputs=outputs,
        stats={"frames": n, **{k: pstats[k] for k in keep if k in pstats},
               "tracks": sum(tr.active for tr in tracks.values()),
               "merged_tracks": sum(not tr.active for tr in tracks.values()), "merge_rewritten_frames": rewritten},
    )

