"""verify: labels for the keyframe's entities — cross-model vote, the verifier for the rest
[M §1.2(c)-(d)]. Every decision is written with its evidence (votes, IoUs, verdict)."""

from __future__ import annotations

from tasks.backends import build_backends
from tasks.config import PipelineConfig
from tasks.labeling.proposals import FrameProposals
from tasks.labeling.vote import label_entities
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore
from tasks.video.framestore import Frames


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    prefix = inputs.output_key(store, "propose", "proposals")
    keyframes = inputs.stats("propose")["keyframes"]
    backends = build_backends(config)
    vstats = getattr(backends.verifier, "stats", None)
    before = vstats.snapshot() if vstats is not None else {}
    stats: dict = {}
    frames = Frames(store, inputs.output_key(store, "decode", "frames"))
    for k in keyframes:
        props = FrameProposals.load(store, prefix, k)
        labels, st = label_entities(props, config, backends, frame=frames.get(k))
        writer.put_json(f"{k:05d}/labels.json", {str(e): lab.to_json() for e, lab in labels.items()})
        stats[str(k)] = st
    totals = {key: sum(s.get(key, 0) for s in stats.values())
              for key in ("entities", "accepted_by_vote", "to_verifier", "verifier_calls", "verifier_unknown")}
    if vstats is not None:
        totals["verifier"] = dict(vstats.since(before), backend=backends.verifier.name,
                                  requests_per_keyframe=round(totals["verifier_calls"] / max(len(keyframes), 1), 2))
    return StageOutput(outputs={"labels": writer.key("")}, stats={"keyframes": keyframes, **totals, "per_keyframe": stats})


def load(store: ObjectStore, prefix: str, frame: int):
    from tasks.labeling.vote import EntityLabel

    raw = store.get_json(f"{prefix}{frame:05d}/labels.json")
    return {int(e): EntityLabel.from_json(v) for e, v in raw.items()}
