"""propose: entity + panoptic proposals on seam-aware tiles, for the keyframe [M §1.2(a)-(b)].

The method runs the SDR on frame 0 and lets propagation and the auto-refine phase take it from
there; later keyframes are chosen by ``refine``. Outputs (per keyframe ``kkkkk/``): the merged
exclusive entity label map, each voter's label map, and their metadata.
"""

from __future__ import annotations

from tasks.backends import build_backends
from tasks.config import PipelineConfig
from tasks.labeling.proposals import propose_frame
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.video.framestore import Frames

KEYFRAMES = (0,)


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    frames = Frames(store, inputs.output_key(store, "decode", "frames"))
    backends = build_backends(config, store)
    stats: dict = {"keyframes": list(KEYFRAMES), "entities": {}, "voter_segments": {}}
    for k in KEYFRAMES:
        props = propose_frame(frames.get(k), config, backends)
        files, meta = props.to_files()
        for name, data in files.items():
            writer.put_bytes(f"{k:05d}/{name}", data, "image/png")
        writer.put_json(f"{k:05d}/proposals.json", meta)
        stats["entities"][str(k)] = int(props.entity.max())
        stats["voter_segments"][str(k)] = {n: len(s.names) for n, s in props.voters.items()}
    return StageOutput(outputs={"proposals": writer.key("")}, stats=stats)
