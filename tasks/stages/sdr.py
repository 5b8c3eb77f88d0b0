"""sdr: fuse the keyframe's labeled entities into exclusive objects (stuff merged per class),
apply the user's prompts, and hand the result to propagation as its prompts [M §1.2(b), (e)]."""

from __future__ import annotations

import numpy as np

from tasks.config import PipelineConfig
from tasks.formats import idmap as idmap_png
from tasks.labeling import prompts as prompts_mod
from tasks.labeling.sdr import EntityLabel, FrameObjects, FrameProposals, fuse
from tasks.stages.contract import StageInputs, StageOutput, StageWriter
from tasks.storage import ObjectStore


def merge_with_prompt(objs: FrameObjects, prompt: np.ndarray, tracks: dict[int, str], first_auto_id: int,
                      covered_by_prompt: float = 0.5) -> FrameObjects:
    """Prompted objects win their pixels; automatic objects move to ids >= first_auto_id. An
    automatic object with at least ``covered_by_prompt`` of its area under the prompts (the
    ``sdr.covered_by_prompt`` setting) is the prompted object as the proposers saw it: dropped."""
    idmap = objs.idmap
    out = np.zeros_like(idmap)
    objects: dict[int, dict] = {}
    areas = np.bincount(idmap.ravel(), minlength=max(objs.objects, default=0) + 1)
    nxt = first_auto_id
    for oid in sorted(objs.objects):
        m = idmap == oid
        left = m & (prompt == 0)
        if areas[oid] == 0 or left.sum() < (1 - covered_by_prompt) * areas[oid]:
            continue
        out[left] = nxt
        objects[nxt] = objs.objects[oid]
        nxt += 1
    for tid, cat in tracks.items():
        if (prompt == tid).any():
            out[prompt == tid] = tid
            from tasks.vocabulary import master

            objects[tid] = {"category": cat, "isthing": not master().is_stuff(cat), "provenance": {"source": "prompt"}}
    return FrameObjects(out, objects, dict(objs.stats, prompted=len(tracks)))


def run(inputs: StageInputs, config: PipelineConfig, store: ObjectStore, writer: StageWriter) -> StageOutput:
    dec = inputs.stats("decode")
    width, n_frames = int(dec["width"]), int(dec["frames"])
    pprefix = inputs.output_key(store, "propose", "proposals")
    lprefix = inputs.output_key(store, "verify", "labels")
    prompts = prompts_mod.load_prompts(store, inputs.video_id, config, n_frames, width)
    k = 0
    props = FrameProposals.load(store, pprefix, k)
    labels = _labels(store, lprefix, k)
    objs = fuse(props, labels, config, width)
    if prompts is not None:
        prompt0 = prompts.at(0, width)
        if prompt0 is not None:
            objs = merge_with_prompt(objs, prompt0, prompts.tracks, prompts.max_id + 1,
                                     config.sdr.covered_by_prompt)
        else:  # prompts only on later frames: keep automatic ids clear of the prompted ones
            shift = prompts.max_id
            objs = FrameObjects(np.where(objs.idmap > 0, objs.idmap + shift, 0).astype(np.uint16),
                                {k2 + shift: v for k2, v in objs.objects.items()}, objs.stats)
    writer.put_bytes(f"objects/{k:05d}.png", idmap_png.encode_png(objs.idmap), "image/png")
    writer.put_json(f"objects/{k:05d}.json", {"frame": k, "objects": {str(i): o for i, o in objs.objects.items()}})
    # the keyframe's entities: the prior of the tracking pass's refreshes (tasks.labeling.sdr.Annotator)
    writer.put_bytes(f"entity/{k:05d}.png", idmap_png.encode_png(props.entity), "image/png")
    writer.put_json(f"entity/{k:05d}.json", {str(e): lab.to_json() for e, lab in labels.items()})
    cats: dict[str, int] = {}
    for o in objs.objects.values():
        cats[o["category"]] = cats.get(o["category"], 0) + 1
    return StageOutput(
        outputs={"objects": writer.key("objects/"), "entity": writer.key("entity/")},
        stats={"keyframe": k, "objects": len(objs.objects), "categories": cats, **objs.stats},
    )


# The keyframe's labels, read here from the verify output rather than through that stage's
# module: stages do not import each other (issue 10, "The house").
def _labels(store: ObjectStore, prefix: str, frame: int) -> dict[int, EntityLabel]:
    raw = store.get_json(f"{prefix}{frame:05d}/labels.json")
    return {int(e): EntityLabel.from_json(v) for e, v in raw.items()}
