"""propagate: the keyframe's objects followed to every frame [M §1.2(e)].

Seam-aware and occlusion-aware (see :mod:`tasks.backends.flow`); memory is one frame and one id
map whatever the length of the video, and id maps are written as they are produced. Objects a
person prompted on later frames enter (or are corrected) at their frame.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from tasks.backends.flow import build_propagator
from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.labeling import prompts as prompts_mod
from tasks.labeling.follow import follow
from tasks.labeling.tracks import Track, tracks_to_json
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.video.framestore import Frames


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    frames = Frames(store, inputs.output_key(store, "decode", "frames"))
    oprefix = inputs.output_key(store, "sdr", "objects")
    idmap0 = idmap_png.decode_png(store.get_bytes(oprefix + "00000.png"))
    objects = store.get_json(oprefix + "00000.json")["objects"]
    tracks = {int(k): Track(o["category"], bool(o["isthing"]), o.get("provenance", {}), 0,
                            "prompt" if o.get("provenance", {}).get("source") == "prompt" else "sdr")
              for k, o in objects.items()}
    prompts = prompts_mod.load_prompts(store, inputs.video_id, config, len(frames), frames.width)
    if prompts is not None:
        for f in sorted(prompts.frames):
            for tid in np.unique(prompts.frames[f]).tolist():
                if tid and tid not in tracks:
                    cat = prompts.tracks[tid]
                    from tasks.vocabulary import master

                    tracks[tid] = Track(cat, not master().is_stuff(cat), {"source": "prompt"}, f, "prompt")
    propagator = build_propagator(config, frames.width, store=store)
    present_frames: dict[int, int] = {}
    bar = tqdm(total=len(frames), desc="propagate", unit="frame", disable=not inputs.params.get("progress") or None)
    for t, _frame, idm in follow(frames, 0, idmap0, propagator, prompts, chunk=config.propagate.sam2_chunk_frames):
        writer.put_bytes(f"idmaps/{t:05d}.png", idmap_png.encode_png(idm), "image/png")
        for tid in np.unique(idm).tolist():
            if tid:
                present_frames[tid] = present_frames.get(tid, 0) + 1
        bar.update(1)
    bar.close()
    writer.put_json("tracks.json", tracks_to_json(tracks))
    return StageOutput(
        outputs={"idmaps": writer.key("idmaps/"), "tracks": writer.key("tracks.json")},
        stats={"frames": len(frames), "tracks": len(tracks),
               "frames_per_track": {str(k): v for k, v in sorted(present_frames.items())}},
    )
